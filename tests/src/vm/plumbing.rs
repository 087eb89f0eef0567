//! The host side of the VM router, inside the bed's namespaces (never the root
//! namespace): the x86 router namespace becomes a switch. Its LAN and WAN veths
//! lose their addresses and each joins a bridge with a TAP device of the same
//! namespace, which qemu opens, so the guest's NICs sit on the same LAN, ISP and
//! shaping (the TBFs on the router's `wan<i>` and the ISPs' `cust`) as the x86
//! router would. The router namespace's own NAT and forwarding are switched off.
//!
//! The guest does no NAT (busybox has no `nft`), so the ISPs and the core learn a
//! route back to the LAN: direct traffic (fail open) then returns over WAN 1.

use std::fmt::Write as _;

use crate::topology::{self, ROUTER_LAN_IF};

/// The TAP for NIC `n` (0: LAN, `i`: WAN `i`).
pub fn tap_name(n: usize) -> String {
    format!("vmtap{n}")
}

/// The bridge for NIC `n`.
pub fn bridge_name(n: usize) -> String {
    format!("vmbr{n}")
}

/// The router namespace's veth for NIC `n`.
fn veth_name(n: usize) -> String {
    if n == 0 {
        ROUTER_LAN_IF.to_owned()
    } else {
        format!("wan{n}")
    }
}

/// The `ip -batch` script for the router namespace with `wans` WANs.
pub fn router_switch_script(wans: usize) -> String {
    let mut s = String::new();
    for n in 0..=wans {
        let (veth, tap, br) = (veth_name(n), tap_name(n), bridge_name(n));
        let _ = writeln!(s, "addr flush dev {veth}");
        let _ = writeln!(s, "link add {br} type bridge forward_delay 0 stp_state 0");
        let _ = writeln!(s, "tuntap add dev {tap} mode tap");
        let _ = writeln!(s, "link set {veth} master {br}");
        let _ = writeln!(s, "link set {tap} master {br}");
        let _ = writeln!(s, "link set {tap} up");
        let _ = writeln!(s, "link set {br} up");
    }
    s
}

/// The `ip` line for ISP `i`: the LAN is behind the guest's WAN `i` address.
pub fn isp_return_route(i: usize) -> String {
    format!(
        "route add 192.168.50.0/24 via {}",
        topology::wan_router_v4(i)
    )
}

/// The `ip` line for the core: the LAN is behind ISP 1.
pub fn core_return_route() -> String {
    "route add 192.168.50.0/24 via 10.250.1.2".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_veth_shares_a_bridge_with_its_tap() {
        let s = router_switch_script(2);
        assert!(s.contains("addr flush dev br-lan\n"));
        assert!(s.contains("link set wan2 master vmbr2\n"));
        assert!(s.contains("tuntap add dev vmtap2 mode tap\nlink set wan2 master vmbr2\nlink set vmtap2 master vmbr2\n"));
        assert!(!s.contains("vmtap3"));
        assert_eq!(
            isp_return_route(2),
            "route add 192.168.50.0/24 via 10.200.2.2"
        );
    }
}
