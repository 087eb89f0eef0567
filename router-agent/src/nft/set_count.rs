//! How many addresses the name sets hold: a `GETSETELEM` dump of each set of the companion
//! table (`name_sets.rs`), on a socket of its own, for the status. The companion is not an
//! owner table, so any socket may read it.

use mpbond_netlink::{protocol, Attrs, Request};

use super::name_sets::{names_table, SET4, SET6};
use super::wire::AttrBuf;
use super::NftError;

/// `NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETSETELEM`.
const GETSETELEM: u16 = (10 << 8) | 13;
const NFPROTO_INET: u8 = 1;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
/// The `nfgenmsg` header in front of every nf_tables message.
const NFGENMSG_LEN: usize = 4;

/// The number of addresses in the IPv4 and the IPv6 name set of owner table `table`,
/// read in the calling thread's network namespace. `ENOENT`: no companion table.
pub fn count_name_sets(table: &str) -> Result<(u64, u64), NftError> {
    let sock_err = |what| {
        move |e: mpbond_netlink::Error| NftError::Socket {
            what,
            source: e.into(),
        }
    };
    let mut socket =
        mpbond_netlink::Socket::open(protocol::NETFILTER).map_err(|source| NftError::Socket {
            what: "opening the NETLINK_NETFILTER socket",
            source,
        })?;
    socket
        .set_recv_timeout(std::time::Duration::from_secs(2))
        .map_err(|source| NftError::Socket {
            what: "setting the receive timeout",
            source,
        })?;
    let names = names_table(table);
    let mut counts = [0u64; 2];
    for (count, set) in counts.iter_mut().zip([SET4, SET6]) {
        let replies = socket
            .request(&dump_request(&names, set))
            .map_err(sock_err("dumping a name set"))?;
        *count = replies
            .iter()
            .map(|r| elements_in(r.payload.get(NFGENMSG_LEN..).unwrap_or_default()))
            .sum();
    }
    Ok((counts[0], counts[1]))
}

/// `GETSETELEM` dump of `set` in `table` (family inet).
fn dump_request(table: &str, set: &str) -> Request {
    let mut body = vec![NFPROTO_INET, 0, 0, 0];
    let mut attrs = AttrBuf::new();
    attrs.put_str(NFTA_SET_ELEM_LIST_TABLE, table);
    attrs.put_str(NFTA_SET_ELEM_LIST_SET, set);
    body.extend_from_slice(attrs.as_bytes());
    Request::dump(GETSETELEM, body)
}

/// The `NFTA_LIST_ELEM`s inside one dump message's `NFTA_SET_ELEM_LIST_ELEMENTS`.
fn elements_in(attrs: &[u8]) -> u64 {
    Attrs::new(attrs)
        .filter(|a| a.id() == NFTA_SET_ELEM_LIST_ELEMENTS)
        .map(|a| a.nested().filter(|e| e.id() == NFTA_LIST_ELEM).count() as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_are_counted_per_list_elem() {
        let mut b = AttrBuf::new();
        b.put_str(NFTA_SET_ELEM_LIST_TABLE, "mpbond_names");
        b.nested(NFTA_SET_ELEM_LIST_ELEMENTS, |b| {
            for _ in 0..3 {
                b.nested(NFTA_LIST_ELEM, |b| b.put_be32(1, 7));
            }
        });
        assert_eq!(elements_in(b.as_bytes()), 3);
        assert_eq!(elements_in(&[]), 0);
        assert_eq!(elements_in(&[1, 2, 3]), 0);
    }

    #[test]
    fn the_dump_names_table_and_set() {
        let req = dump_request("mpbond_names", "bypass4");
        assert!(req.is_dump());
        assert_eq!(req.kind, GETSETELEM);
        assert_eq!(req.body[0], NFPROTO_INET);
    }
}
