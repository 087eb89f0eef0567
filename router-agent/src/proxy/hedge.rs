//! Happy Eyeballs for the upstream connection: a new LAN connection never waits on a
//! dead WAN for longer than the core's bound.
//!
//! The first attempt starts from [`Upstream::source`]. When it has no SYN-ACK after
//! [`Hedge::after`] (or failed sooner), a second attempt starts from [`Hedge::source`]
//! with a freshly sealed request; whichever completes its handshake first is kept and
//! the other is dropped (closed). "Completes" is the TCP handshake, not the Convert
//! reply: [`mpbond_relay::connect::connect_with`] returns once the socket has a peer,
//! while the reply waits on the destination.
//!
//! **The LAN client's bytes go to one attempt only.** The Convert request rides in the
//! SYN, but the LAN bytes are written behind it only after this returns (`conn`), on the
//! winner. A loser whose SYN reached the concentrator (its SYN-ACK lost on the way back)
//! leaves the concentrator a request without a body; the concentrator may connect to the
//! destination, which then sees a connection that carries nothing and closes. So the
//! destination receives the client's first bytes exactly once.
//!
//! The outcome goes to the core ([`Input::UpstreamHedged`]), which makes a WAN a hedge
//! won against a suspect and probes.

use mpbond_protocol::{ClientHandshake, Message};
use mpbond_relay::connect::Connected;
use tracing::debug;

use super::ConnContext;
use crate::core::{HedgeOutcome, Input};
use crate::upstream::{Upstream, UpstreamError};

/// An upstream connection made, and which attempt made it.
pub type Opened = (Connected, ClientHandshake);

/// Open the upstream connection for `message`, hedged as `upstream.hedge` says.
pub async fn open_hedged(
    upstream: &Upstream,
    message: &Message,
    ctx: &ConnContext,
) -> Result<Opened, UpstreamError> {
    let timeout = upstream.connect_timeout;
    let Some(hedge) = upstream.hedge else {
        return upstream.open(message, timeout).await;
    };
    let first = upstream.open(message, timeout);
    tokio::pin!(first);
    let failed_early = tokio::select! {
        opened = &mut first => match opened {
            Ok(opened) => return Ok(opened),
            Err(error) => Some(error),
        },
        () = tokio::time::sleep(hedge.after) => None,
    };
    debug!(
        primary = ?upstream.source,
        hedge = %hedge.source,
        after = ?hedge.after,
        failed = failed_early.is_some(),
        "no SYN-ACK in time, hedging from another WAN"
    );
    let second = upstream.open_from(Some(hedge.source), message, timeout);
    tokio::pin!(second);
    let tell = |hedge_won: bool| {
        ctx.tell(Input::UpstreamHedged(HedgeOutcome {
            primary: upstream.source,
            hedge: hedge.source,
            hedge_won,
        }))
    };
    if let Some(error) = failed_early {
        tell(true);
        return second.await.map_err(|_| error);
    }
    tokio::select! {
        opened = &mut first => match opened {
            Ok(opened) => {
                tell(false);
                Ok(opened)
            }
            Err(_) => {
                tell(true);
                second.await
            }
        },
        opened = &mut second => match opened {
            Ok(opened) => {
                tell(true);
                Ok(opened)
            }
            Err(_) => {
                tell(false);
                first.await
            }
        },
    }
}
