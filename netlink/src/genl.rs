//! Generic netlink: the `genlmsghdr`, and resolving a family through `nlctrl`.
//!
//! A generic-netlink message is `nlmsghdr` (type = the family id) + `genlmsghdr` (`cmd`,
//! `version`, two reserved bytes) + attributes. [`get_family`] asks `nlctrl` for a family
//! by name; [`Family::parse`] reads its id and multicast groups from the reply.
//!
//! Constants are from `linux/genetlink.h`.

use crate::attr::{AttrBuf, Attrs};
use crate::msg::{Reply, Request};
use crate::Error;

/// The size of `struct genlmsghdr`.
pub const GENL_HDRLEN: usize = 4;
/// `GENL_ID_CTRL`: the `nlctrl` family.
pub const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_VERSION: u8 = 2;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const CTRL_ATTR_MCAST_GROUPS: u16 = 7;
const CTRL_ATTR_MCAST_GRP_NAME: u16 = 1;
const CTRL_ATTR_MCAST_GRP_ID: u16 = 2;

/// A request to family `family`: `cmd`, `version`, then `attrs`; answered by an ACK, or
/// with `dump` a dump.
pub fn request(family: u16, cmd: u8, version: u8, attrs: AttrBuf, dump: bool) -> Request {
    let mut body = vec![cmd, version, 0, 0];
    body.extend_from_slice(attrs.as_bytes());
    if dump {
        Request::dump(family, body)
    } else {
        Request::new(family, 0, body)
    }
}

/// The command and the attributes of a generic-netlink payload.
pub fn split(payload: &[u8]) -> Option<(u8, Attrs<'_>)> {
    let cmd = *payload.first()?;
    Some((cmd, Attrs::new(payload.get(GENL_HDRLEN..)?)))
}

/// `CTRL_CMD_GETFAMILY` for `name`.
pub fn get_family(name: &str) -> Request {
    let mut attrs = AttrBuf::new();
    attrs.put_str(CTRL_ATTR_FAMILY_NAME, name);
    request(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, CTRL_VERSION, attrs, false)
}

/// A resolved family: its message type and its multicast groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family {
    pub id: u16,
    /// `(name, group id)`.
    pub groups: Vec<(String, u32)>,
}

impl Family {
    /// The family in a `CTRL_CMD_GETFAMILY` reply; `None` without an id.
    pub fn parse(payload: &[u8]) -> Option<Family> {
        let (_, attrs) = split(payload)?;
        let mut id = None;
        let mut groups = Vec::new();
        for attr in attrs {
            match attr.id() {
                CTRL_ATTR_FAMILY_ID => id = attr.u16(),
                CTRL_ATTR_MCAST_GROUPS => {
                    for group in attr.nested() {
                        let mut name = None;
                        let mut gid = None;
                        for a in group.nested() {
                            match a.id() {
                                CTRL_ATTR_MCAST_GRP_NAME => name = a.str(),
                                CTRL_ATTR_MCAST_GRP_ID => gid = a.u32(),
                                _ => {}
                            }
                        }
                        if let (Some(name), Some(gid)) = (name, gid) {
                            groups.push((name.to_owned(), gid));
                        }
                    }
                }
                _ => {}
            }
        }
        Some(Family { id: id?, groups })
    }

    /// The family in the replies to [`get_family`].
    pub fn from_replies(replies: &[Reply]) -> Result<Family, Error> {
        replies
            .iter()
            .find_map(|r| Family::parse(&r.payload))
            .ok_or(Error::Malformed("nlctrl reply without a family id"))
    }

    /// The id of multicast group `name`.
    pub fn group(&self, name: &str) -> Option<u32> {
        self.groups
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| *id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_family_is_a_ctrl_request() {
        let req = get_family("mptcp_pm");
        assert_eq!(req.kind, GENL_ID_CTRL);
        assert!(!req.is_dump());
        let (cmd, mut attrs) = split(&req.body).expect("genl header");
        assert_eq!(cmd, CTRL_CMD_GETFAMILY);
        assert_eq!(attrs.next().and_then(|a| a.str()), Some("mptcp_pm"));
    }

    #[test]
    fn family_reply_parses_id_and_groups() {
        let mut attrs = AttrBuf::new();
        attrs.put_str(CTRL_ATTR_FAMILY_NAME, "mptcp_pm");
        attrs.put_u16(CTRL_ATTR_FAMILY_ID, 0x1d);
        attrs.nested(CTRL_ATTR_MCAST_GROUPS, |b| {
            b.nested(1, |g| {
                g.put_u32(CTRL_ATTR_MCAST_GRP_ID, 9);
                g.put_str(CTRL_ATTR_MCAST_GRP_NAME, "mptcp_pm_events");
            });
        });
        let reply = request(GENL_ID_CTRL, 1, 2, attrs, false);
        let family = Family::parse(&reply.body).expect("family");
        assert_eq!(family.id, 0x1d);
        assert_eq!(family.group("mptcp_pm_events"), Some(9));
        assert_eq!(family.group("other"), None);
        assert!(Family::parse(&[1, 2]).is_none());
        assert!(Family::from_replies(&[]).is_err());
    }
}
