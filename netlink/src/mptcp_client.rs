//! The MPTCP path-manager client (feature `tokio`): one socket, the family resolved once.
//!
//! ```text
//! let pm = PmClient::connect().await?;            // CTRL_CMD_GETFAMILY "mptcp_pm"
//! pm.add_endpoint(&ep).await?;                    // ADD_ADDR, explicit id, subflow(+backup)
//! pm.set_backup(ep.id, true).await?;              // SET_FLAGS
//! let all = pm.dump_endpoints().await?;           // GET_ADDR dump
//! pm.set_limits(limits).await?;                   // SET_LIMITS
//! let mut events = pm.events()?;                  // mptcp_pm_events multicast group
//! while let Some(ev) = events.next_event().await { /* ... */ }
//! ```
//!
//! Every change waits for the kernel's ACK; a dump for `NLMSG_DONE`. Requests are
//! serialised on the one socket, so the client can be shared by reference.

use std::io;
use std::task::{ready, Context, Poll};

use tokio::sync::Mutex;

use crate::async_socket::{AsyncSocket, Subscription};
use crate::genl::{self, Family};
use crate::mptcp::{self, Endpoint, Limits, PmEvent, EVENTS_GROUP, FAMILY_NAME};
use crate::msg::{Reply, Request};
use crate::socket::protocol;
use crate::Error;

/// A connection to the in-kernel path manager of the caller's network namespace.
#[derive(Debug)]
pub struct PmClient {
    socket: Mutex<AsyncSocket>,
    family: Family,
}

impl PmClient {
    /// Open a generic-netlink socket and resolve `mptcp_pm` on it. `ENOENT` means this
    /// kernel has no MPTCP.
    pub async fn connect() -> Result<PmClient, Error> {
        let mut socket = AsyncSocket::open(protocol::GENERIC)?;
        let replies = socket.request(&genl::get_family(FAMILY_NAME)).await?;
        let family = Family::from_replies(&replies)?;
        Ok(PmClient {
            socket: Mutex::new(socket),
            family,
        })
    }

    /// The resolved family (its id and multicast groups).
    pub fn family(&self) -> &Family {
        &self.family
    }

    /// The id of `mptcp_pm_events`; `None` on a kernel without it.
    pub fn events_group(&self) -> Option<u32> {
        self.family.group(EVENTS_GROUP)
    }

    /// Send one request built by [`crate::mptcp`] and await its answer.
    pub async fn execute(&self, req: &Request) -> Result<Vec<Reply>, Error> {
        self.socket.lock().await.request(req).await
    }

    pub async fn add_endpoint(&self, ep: &Endpoint) -> Result<(), Error> {
        self.execute(&mptcp::add_endpoint(self.family.id, ep))
            .await
            .map(drop)
    }

    pub async fn del_endpoint(&self, id: u8) -> Result<(), Error> {
        self.execute(&mptcp::del_endpoint(self.family.id, id))
            .await
            .map(drop)
    }

    /// Every endpoint of the namespace, ours or not.
    pub async fn flush_endpoints(&self) -> Result<(), Error> {
        self.execute(&mptcp::flush_endpoints(self.family.id))
            .await
            .map(drop)
    }

    pub async fn set_backup(&self, id: u8, backup: bool) -> Result<(), Error> {
        self.execute(&mptcp::set_backup(self.family.id, id, backup))
            .await
            .map(drop)
    }

    pub async fn set_limits(&self, limits: Limits) -> Result<(), Error> {
        self.execute(&mptcp::set_limits(self.family.id, limits))
            .await
            .map(drop)
    }

    pub async fn get_limits(&self) -> Result<Limits, Error> {
        let replies = self.execute(&mptcp::get_limits(self.family.id)).await?;
        Ok(mptcp::parse_limits(&replies))
    }

    /// Every endpoint of the namespace, ours or not.
    pub async fn dump_endpoints(&self) -> Result<Vec<Endpoint>, Error> {
        let replies = self.execute(&mptcp::dump_endpoints(self.family.id)).await?;
        Ok(replies
            .iter()
            .filter_map(|r| mptcp::parse_endpoint(&r.payload))
            .collect())
    }

    /// Subscribe to `mptcp_pm_events` on a socket of its own.
    pub fn events(&self) -> Result<PmEvents, Error> {
        let group = self.events_group().ok_or_else(|| {
            io::Error::new(io::ErrorKind::Unsupported, "no mptcp_pm_events group")
        })?;
        let subscription = Subscription::open(protocol::GENERIC, &[group])?;
        Ok(PmEvents {
            subscription,
            family: self.family.id,
        })
    }
}

/// The `mptcp_pm_events` stream. Ends if the socket fails (e.g. its buffer overran): the
/// caller subscribes again and counts subflows afresh.
#[derive(Debug)]
pub struct PmEvents {
    subscription: Subscription,
    family: u16,
}

impl PmEvents {
    pub fn poll_next_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<PmEvent>> {
        loop {
            let Some(msg) = ready!(self.subscription.poll_next_message(cx)) else {
                return Poll::Ready(None);
            };
            if msg.kind != self.family {
                continue;
            }
            if let Some(event) = PmEvent::parse(&msg.payload) {
                return Poll::Ready(Some(event));
            }
        }
    }

    pub async fn next_event(&mut self) -> Option<PmEvent> {
        std::future::poll_fn(|cx| self.poll_next_event(cx)).await
    }
}
