//! The MPTCP in-kernel path manager, in the agent's terms: [`PmHandle`] wraps
//! `mpbond-netlink`'s [`PmClient`] with the model's [`Endpoint`] and [`Limits`], in the
//! handle → request → `execute()` shape of `rtnetlink`:
//!
//! ```text
//! let pm = PmHandle::connect().await?;          // resolves the family
//! pm.add_endpoint(&ep).execute().await?;        // ADD_ADDR, explicit id, subflow(+backup)
//! pm.set_backup(ep.id, true).execute().await?; // SET_FLAGS
//! pm.del_endpoint(ep.id).execute().await?;      // DEL_ADDR
//! let all = pm.dump_endpoints().await?;         // GET_ADDR dump
//! let mut events = pm.events().await?;          // mptcp_pm_events multicast group
//! ```
//!
//! Every request succeeds only on the kernel's ACK; a non-zero errno becomes
//! [`NetError::Kernel`] naming the operation. Dumps must end with `NLMSG_DONE`. Sockets
//! live in the network namespace of the thread that calls `connect`.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use mpbond_netlink::{mptcp, PmClient, Request};

pub use mpbond_netlink::mptcp::{PmEvent, PmEventKind};

use super::nl_err;
use super::types::{Endpoint, Limits, NetError};

/// The resolved family: its message type and the id of its event multicast group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    pub id: u16,
    /// `None` on a kernel without the `mptcp_pm_events` group.
    pub events_group: Option<u32>,
}

/// A connection to the path manager. One socket; requests are serialised on it.
#[derive(Debug)]
pub struct PmHandle {
    client: PmClient,
}

fn to_wire(ep: &Endpoint) -> mptcp::Endpoint {
    mptcp::Endpoint {
        id: ep.id,
        addr: ep.addr,
        ifindex: ep.ifindex,
        backup: ep.backup,
    }
}

fn from_wire(ep: mptcp::Endpoint) -> Endpoint {
    Endpoint {
        id: ep.id,
        addr: ep.addr,
        ifindex: ep.ifindex,
        backup: ep.backup,
    }
}

impl PmHandle {
    /// Open the socket and resolve the family. `ENOENT`: no MPTCP in this kernel.
    pub async fn connect() -> Result<PmHandle, NetError> {
        let client = PmClient::connect()
            .await
            .map_err(|e| nl_err("resolving the mptcp_pm genetlink family", e))?;
        Ok(PmHandle { client })
    }

    /// The resolved family.
    pub fn family(&self) -> Family {
        Family {
            id: self.client.family().id,
            events_group: self.client.events_group(),
        }
    }

    fn request(&self, req: Request, op: String) -> PmRequest<'_> {
        PmRequest { pm: self, req, op }
    }

    /// `ADD_ADDR`: an endpoint with its explicit id and the `subflow` (+`backup`) flag.
    pub fn add_endpoint(&self, ep: &Endpoint) -> PmRequest<'_> {
        let op = format!("adding MPTCP endpoint {} ({})", ep.id, ep.addr);
        self.request(mptcp::add_endpoint(self.family().id, &to_wire(ep)), op)
    }

    /// `DEL_ADDR` by id.
    pub fn del_endpoint(&self, id: u8) -> PmRequest<'_> {
        let op = format!("deleting MPTCP endpoint {id}");
        self.request(mptcp::del_endpoint(self.family().id, id), op)
    }

    /// `FLUSH_ADDRS`: every endpoint, ours or not. For tests and explicit resets only.
    pub fn flush_endpoints(&self) -> PmRequest<'_> {
        let op = "flushing MPTCP endpoints".to_owned();
        self.request(mptcp::flush_endpoints(self.family().id), op)
    }

    /// `SET_FLAGS`: turn the backup flag of endpoint `id` on or off.
    pub fn set_backup(&self, id: u8, backup: bool) -> PmRequest<'_> {
        let op = format!("setting backup={backup} on MPTCP endpoint {id}");
        self.request(mptcp::set_backup(self.family().id, id, backup), op)
    }

    /// `SET_LIMITS`.
    pub fn set_limits(&self, limits: Limits) -> PmRequest<'_> {
        let op = format!(
            "setting MPTCP limits subflows={} add_addr_accepted={}",
            limits.subflows, limits.add_addr_accepted
        );
        let wire = mptcp::Limits {
            subflows: limits.subflows,
            add_addr_accepted: limits.add_addr_accepted,
        };
        self.request(mptcp::set_limits(self.family().id, wire), op)
    }

    /// `GET_LIMITS`.
    pub async fn get_limits(&self) -> Result<Limits, NetError> {
        let limits = self
            .client
            .get_limits()
            .await
            .map_err(|e| nl_err("getting MPTCP limits", e))?;
        Ok(Limits {
            subflows: limits.subflows,
            add_addr_accepted: limits.add_addr_accepted,
        })
    }

    /// `GET_ADDR` dump: every endpoint in the namespace, ours or not.
    pub async fn dump_endpoints(&self) -> Result<Vec<Endpoint>, NetError> {
        let all = self
            .client
            .dump_endpoints()
            .await
            .map_err(|e| nl_err("dumping MPTCP endpoints", e))?;
        Ok(all.into_iter().map(from_wire).collect())
    }

    /// Subscribe to `mptcp_pm_events` on a socket of its own.
    pub async fn events(&self) -> Result<PmEvents, NetError> {
        let events = self
            .client
            .events()
            .map_err(|e| nl_err("subscribing to mptcp_pm_events", e))?;
        Ok(PmEvents(events))
    }
}

/// One request to the path manager; nothing is sent until [`PmRequest::execute`].
#[derive(Debug)]
#[must_use = "a request does nothing until execute()"]
pub struct PmRequest<'a> {
    pm: &'a PmHandle,
    req: Request,
    op: String,
}

impl PmRequest<'_> {
    /// Send it and wait for the kernel's ACK.
    pub async fn execute(self) -> Result<(), NetError> {
        let PmRequest { pm, req, op } = self;
        pm.client.execute(&req).await.map_err(|e| nl_err(&op, e))?;
        Ok(())
    }
}

/// The `mptcp_pm_events` stream. Ends if the socket fails (e.g. its buffer overran): the
/// caller re-subscribes and counts subflows afresh.
#[derive(Debug)]
pub struct PmEvents(mpbond_netlink::PmEvents);

impl Stream for PmEvents {
    type Item = PmEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<PmEvent>> {
        self.0.poll_next_event(cx)
    }
}
