//! A client of the MPTCP in-kernel path manager (generic-netlink family `mptcp_pm`).
//!
//! The `mptcp-pm` crate only dumps; this one also writes, in the handle → request →
//! `execute()` shape of `rtnetlink`:
//!
//! ```ignore
//! let pm = PmHandle::connect().await?;          // resolves the family, spawns the connection
//! pm.add_endpoint(&ep).execute().await?;        // ADD_ADDR, explicit id, subflow(+backup)
//! pm.set_backup(ep.id, true).execute().await?; // SET_FLAGS
//! pm.del_endpoint(ep.id).execute().await?;      // DEL_ADDR
//! let all = pm.dump_endpoints().await?;         // GET_ADDR dump
//! let mut events = pm.events().await?;          // mptcp_pm_events multicast group
//! ```
//!
//! Every request carries `NLM_F_ACK` and succeeds only on the kernel's ACK; a non-zero
//! errno becomes [`NetError::Kernel`] naming the operation. Dumps must end with
//! `NLMSG_DONE`. The connection task runs on the caller's tokio runtime and is aborted
//! when the handle (or the event stream) is dropped. Sockets live in the network
//! namespace of the thread that calls `connect`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::channel::mpsc::UnboundedReceiver;
use futures::{Stream, StreamExt};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_generic::ctrl::nlas::{GenlCtrlAttrs, McastGrpAttrs};
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::GenlMessage;
use rtnetlink::proto::{new_connection, ConnectionHandle};
use rtnetlink::sys::{protocols::NETLINK_GENERIC, AsyncSocket, SocketAddr};

use super::model::{Endpoint, Limits, NetError};
use super::pm_wire::{self, cmd};
pub use super::pm_wire::{Attr, PmEvent, PmEventKind, PmMessage};
use super::{kernel_err, other_err, AbortOnDrop};

type Genl = GenlMessage<PmMessage>;

/// The resolved family: its message type and the id of its event multicast group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    pub id: u16,
    /// `None` on a kernel without the `mptcp_pm_events` group.
    pub events_group: Option<u32>,
}

/// Look the family up with `CTRL_CMD_GETFAMILY`. `ENOENT` means no MPTCP in this kernel.
pub async fn resolve_family() -> Result<Family, NetError> {
    const OP: &str = "resolving the mptcp_pm genetlink family";
    let (conn, handle, _) =
        new_connection::<GenlMessage<GenlCtrl>>(NETLINK_GENERIC).map_err(|e| kernel_err(OP, e))?;
    let _task = AbortOnDrop(tokio::spawn(conn));
    let mut msg = NetlinkMessage::from(GenlMessage::from_payload(GenlCtrl {
        cmd: GenlCtrlCmd::GetFamily,
        nlas: vec![GenlCtrlAttrs::FamilyName(pm_wire::FAMILY_NAME.to_owned())],
    }));
    msg.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    msg.finalize();
    let mut replies = handle
        .request(msg, SocketAddr::new(0, 0))
        .map_err(|e| other_err(OP, e))?;
    let mut family = None;
    while let Some(reply) = replies.next().await {
        match reply.payload {
            NetlinkPayload::InnerMessage(genl) => family = Some(family_of(&genl.payload.nlas)),
            NetlinkPayload::Error(err) if err.code.is_some() => {
                return Err(kernel_err(OP, err.to_io()))
            }
            _ => {}
        }
    }
    family
        .flatten()
        .ok_or_else(|| kernel_err(OP, io::Error::other("no family in the reply")))
}

fn family_of(nlas: &[GenlCtrlAttrs]) -> Option<Family> {
    let mut id = None;
    let mut events_group = None;
    for nla in nlas {
        match nla {
            GenlCtrlAttrs::FamilyId(fid) => id = Some(*fid),
            GenlCtrlAttrs::McastGroups(groups) => {
                for group in groups {
                    let name = group.iter().find_map(|a| match a {
                        McastGrpAttrs::Name(n) => Some(n.as_str()),
                        McastGrpAttrs::Id(_) => None,
                    });
                    let gid = group.iter().find_map(|a| match a {
                        McastGrpAttrs::Id(g) => Some(*g),
                        McastGrpAttrs::Name(_) => None,
                    });
                    if name == Some(pm_wire::EVENTS_GROUP) {
                        events_group = gid;
                    }
                }
            }
            _ => {}
        }
    }
    Some(Family {
        id: id?,
        events_group,
    })
}

/// A connection to the path manager. Cheap requests; one socket.
#[derive(Debug)]
pub struct PmHandle {
    handle: ConnectionHandle<Genl>,
    family: Family,
    _task: AbortOnDrop,
}

impl PmHandle {
    /// Resolve the family and spawn the connection on the current tokio runtime.
    pub async fn connect() -> Result<PmHandle, NetError> {
        let family = resolve_family().await?;
        let (mut conn, handle, _) = new_connection::<Genl>(NETLINK_GENERIC)
            .map_err(|e| kernel_err("opening the mptcp_pm socket", e))?;
        conn.set_forward_ack(true);
        conn.set_forward_done(true);
        Ok(PmHandle {
            handle,
            family,
            _task: AbortOnDrop(tokio::spawn(conn)),
        })
    }

    /// The resolved family.
    pub fn family(&self) -> Family {
        self.family
    }

    fn request(&self, cmd: u8, attrs: Vec<Attr>, op: String) -> PmRequest<'_> {
        PmRequest {
            pm: self,
            msg: PmMessage { cmd, attrs },
            op,
            dump: false,
        }
    }

    /// `ADD_ADDR`: an endpoint with its explicit id and the `subflow` (+`backup`) flag.
    pub fn add_endpoint(&self, ep: &Endpoint) -> PmRequest<'_> {
        let op = format!("adding MPTCP endpoint {} ({})", ep.id, ep.addr);
        self.request(cmd::ADD_ADDR, pm_wire::add_endpoint_attrs(ep), op)
    }

    /// `DEL_ADDR` by id.
    pub fn del_endpoint(&self, id: u8) -> PmRequest<'_> {
        let op = format!("deleting MPTCP endpoint {id}");
        self.request(cmd::DEL_ADDR, pm_wire::del_endpoint_attrs(id), op)
    }

    /// `FLUSH_ADDRS`: every endpoint, ours or not. For tests and explicit resets only.
    pub fn flush_endpoints(&self) -> PmRequest<'_> {
        let op = "flushing MPTCP endpoints".to_owned();
        self.request(cmd::FLUSH_ADDRS, Vec::new(), op)
    }

    /// `SET_FLAGS`: turn the backup flag of endpoint `id` on or off.
    pub fn set_backup(&self, id: u8, backup: bool) -> PmRequest<'_> {
        let op = format!("setting backup={backup} on MPTCP endpoint {id}");
        self.request(cmd::SET_FLAGS, pm_wire::set_backup_attrs(id, backup), op)
    }

    /// `SET_LIMITS`.
    pub fn set_limits(&self, limits: Limits) -> PmRequest<'_> {
        let op = format!(
            "setting MPTCP limits subflows={} add_addr_accepted={}",
            limits.subflows, limits.add_addr_accepted
        );
        self.request(cmd::SET_LIMITS, pm_wire::set_limits_attrs(limits), op)
    }

    /// `GET_LIMITS`.
    pub async fn get_limits(&self) -> Result<Limits, NetError> {
        let op = "getting MPTCP limits".to_owned();
        let replies = self
            .request(cmd::GET_LIMITS, Vec::new(), op)
            .execute()
            .await?;
        let reply = replies
            .first()
            .ok_or_else(|| kernel_err("getting MPTCP limits", io::Error::other("no reply")))?;
        Ok(pm_wire::parse_limits(reply))
    }

    /// `GET_ADDR` dump: every endpoint in the namespace, ours or not.
    pub async fn dump_endpoints(&self) -> Result<Vec<Endpoint>, NetError> {
        let mut req = self.request(cmd::GET_ADDR, Vec::new(), "dumping MPTCP endpoints".into());
        req.dump = true;
        let replies = req.execute().await?;
        Ok(replies.iter().filter_map(pm_wire::parse_endpoint).collect())
    }

    /// Subscribe to `mptcp_pm_events` on a socket of its own.
    pub async fn events(&self) -> Result<PmEvents, NetError> {
        const OP: &str = "subscribing to mptcp_pm_events";
        let group = self.family.events_group.ok_or_else(|| {
            kernel_err(
                OP,
                io::Error::new(io::ErrorKind::Unsupported, "no such group"),
            )
        })?;
        let (mut conn, _handle, rx) =
            new_connection::<Genl>(NETLINK_GENERIC).map_err(|e| kernel_err(OP, e))?;
        let socket = conn.socket_mut().socket_mut();
        socket.bind_auto().map_err(|e| kernel_err(OP, e))?;
        socket
            .add_membership(group)
            .map_err(|e| kernel_err(OP, e))?;
        Ok(PmEvents {
            rx,
            _task: AbortOnDrop(tokio::spawn(conn)),
        })
    }
}

/// One request to the path manager; nothing is sent until [`PmRequest::execute`].
#[derive(Debug)]
#[must_use = "a request does nothing until execute()"]
pub struct PmRequest<'a> {
    pm: &'a PmHandle,
    msg: PmMessage,
    op: String,
    dump: bool,
}

impl PmRequest<'_> {
    /// Send it and wait for the ACK (or, for a dump, `NLMSG_DONE`). Returns the replies.
    pub async fn execute(self) -> Result<Vec<PmMessage>, NetError> {
        let PmRequest { pm, msg, op, dump } = self;
        let mut genl = GenlMessage::from_payload(msg);
        genl.set_resolved_family_id(pm.family.id);
        let mut nl = NetlinkMessage::from(genl);
        nl.header.flags = NLM_F_REQUEST | if dump { NLM_F_DUMP } else { NLM_F_ACK };
        nl.finalize();
        let mut stream = pm
            .handle
            .request(nl, SocketAddr::new(0, 0))
            .map_err(|e| other_err(&op, e))?;
        let mut replies = Vec::new();
        while let Some(reply) = stream.next().await {
            match reply.payload {
                NetlinkPayload::InnerMessage(genl) => replies.push(genl.payload),
                NetlinkPayload::Error(err) => match err.code {
                    Some(_) => return Err(kernel_err(&op, err.to_io())),
                    None if !dump => return Ok(replies),
                    None => {}
                },
                NetlinkPayload::Done(_) if dump => return Ok(replies),
                _ => {}
            }
        }
        Err(kernel_err(
            &op,
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "netlink connection closed before the ACK",
            ),
        ))
    }
}

/// The `mptcp_pm_events` stream. Ends if the socket fails (e.g. its buffer overran): the
/// caller re-subscribes and counts subflows afresh.
#[derive(Debug)]
pub struct PmEvents {
    rx: UnboundedReceiver<(NetlinkMessage<Genl>, SocketAddr)>,
    _task: AbortOnDrop,
}

impl Stream for PmEvents {
    type Item = PmEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<PmEvent>> {
        loop {
            match self.rx.poll_next_unpin(cx) {
                Poll::Ready(Some((msg, _))) => {
                    if let NetlinkPayload::InnerMessage(genl) = msg.payload {
                        if let Some(event) = PmEvent::parse(&genl.payload) {
                            return Poll::Ready(Some(event));
                        }
                    }
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
