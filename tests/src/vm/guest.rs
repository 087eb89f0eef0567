//! What runs inside the guest, as text: the init script, the network setup that
//! makes it the bed's router, and the agent's UCI config. Pure, unit tested.
//!
//! The init script mounts the usual filesystems, loads the modules in order, names
//! the NICs by their MAC address (`br-lan`, `wan1`, ...; the names the bed's x86
//! router has), serves a shell on the second serial port (`/dev/ttyS1`, raw, fed
//! through a pipe so the shell is not interactive: no prompt, no echo; init keeps the
//! port open, so bytes that arrive before the shell reads are kept) and prints
//! [`READY_LINE`] on the console.

use std::fmt::Write as _;

use crate::topology::{self, Node, Plan, ROUTER_LAN_IF};

/// The console line that says the guest is ready for commands.
pub const READY_LINE: &str = "mpbond-vm: ready";
/// The guest's agent control socket (the agent's default).
pub const AGENT_SOCKET: &str = "/var/run/mpbond/agent.sock";
/// The agent's UCI config in the guest.
pub const AGENT_UCI: &str = "/etc/config/mpbond";
/// The agent's log in the guest.
pub const AGENT_LOG: &str = "/tmp/mpbond-agent.log";

/// The MAC address of the guest's NIC `n`: 0 is the LAN, `i` is WAN `i`.
pub fn mac(n: usize) -> String {
    format!("52:54:00:4d:42:{n:02x}")
}

/// The guest's name for its NIC `n`.
pub fn nic_name(n: usize) -> String {
    if n == 0 {
        ROUTER_LAN_IF.to_owned()
    } else {
        format!("wan{n}")
    }
}

/// The init lines that make IRQs 10 and 11 level-triggered.
pub const ELCR_LEVEL: &str =
    "printf '\\014' | dd of=/dev/port bs=1 seek=1233 count=1 2>/dev/null \
     || echo 'mpbond-vm: cannot set the ELCR'\n\
     echo \"mpbond-vm: ELCR2 $(dd if=/dev/port bs=1 skip=1233 count=1 2>/dev/null | od -An -tx1)\"\n";

/// The `/init` script, loading `modules` (names, from `/lib/modules/<name>.ko`) in order.
pub fn init_script(modules: &[String]) -> String {
    let mut s = String::from(
        "#!/bin/busybox sh\n\
         /bin/busybox --install -s\n\
         export PATH=/usr/sbin:/usr/bin:/sbin:/bin\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sysfs /sys\n\
         mount -t devtmpfs devtmpfs /dev\n\
         mount -t tmpfs tmpfs /tmp\n\
         mount -t tmpfs tmpfs /run\n\
         dmesg -n 1\n",
    );
    // Without firmware (qemu's -kernel) nothing sets the PIIX4's ELCR, so the PCI
    // interrupts 10 and 11, which the NICs share, stay edge-triggered and one NIC's
    // interrupt is lost while another's is pending: the guest's network stalls under
    // load. Make them level-triggered, as YAMON would (port 0x4d1, bits 2 and 3).
    s.push_str(ELCR_LEVEL);
    for name in modules {
        let _ = writeln!(
            s,
            "insmod /lib/modules/{name}.ko || echo 'mpbond-vm: insmod {name} failed'"
        );
    }
    s.push_str(
        "for d in /sys/class/net/*; do\n\
         \tn=${d##*/}\n\
         \tcase $(cat $d/address) in\n",
    );
    for n in 0..=topology::MAX_WANS {
        let _ = writeln!(
            s,
            "\t{}) ip link set dev $n name {} ;;",
            mac(n),
            nic_name(n)
        );
    }
    s.push_str(
        "\tesac\n\
         done\n\
         ip link set lo up\n\
         exec 3<>/dev/ttyS1\n\
         stty raw -echo <&3\n\
         (while :; do cat /dev/ttyS1 | sh >/dev/ttyS1 2>&1; done) &\n",
    );
    let _ = writeln!(s, "echo '{READY_LINE}'");
    s.push_str("while :; do sleep 3600; done\n");
    s
}

/// The shell commands that make the guest the router of `plan`: sysctls, LAN
/// address, WAN addresses and main-table default routes as netifd sets them
/// (the agent does per-WAN routing), IPv4 only.
pub fn network_script(plan: &Plan) -> String {
    let mut s = String::new();
    for kv in plan.sysctls(Node::Router) {
        let _ = writeln!(s, "sysctl -q -w {kv}");
    }
    let _ = writeln!(s, "ip link set {ROUTER_LAN_IF} up");
    let _ = writeln!(
        s,
        "ip addr add {}/24 dev {ROUTER_LAN_IF}",
        topology::LAN_ROUTER_V4
    );
    for i in 1..=plan.rates.len() {
        for line in topology::router_wan_lines(i, true) {
            // The guest is IPv4 only: busybox `ip` knows no `nodad`, and the
            // scenarios run over IPv4.
            if line.starts_with("-6 ") || line.contains(':') {
                continue;
            }
            let _ = writeln!(s, "ip {line}");
        }
    }
    s
}

/// The agent's UCI config for the guest: the bed's concentrator and key, the LAN,
/// quick concentrator probes, no `wan` section (the agent detects its WANs from the
/// default routes), no ubus (the guest has no netifd) and no state kept.
pub fn agent_uci(key_hex: &str, log_level: &str) -> String {
    format!(
        "config globals 'globals'\n\
         \toption enabled '1'\n\
         \toption log_level '{log_level}'\n\
         \toption host '{}'\n\
         \toption port '{}'\n\
         \toption client_id '{}'\n\
         \toption key '{key_hex}'\n\
         \tlist lan_interface '{ROUTER_LAN_IF}'\n\
         \toption listen_port '4851'\n\
         \toption interval_ms '300'\n\
         \toption timeout_ms '1000'\n\
         \toption down_after '2'\n\
         \toption up_after '1'\n\
         \toption ubus_socket 'off'\n\
         \toption state_dir ''\n",
        topology::VPS_V4,
        mpbond_protocol::DEFAULT_PORT,
        crate::daemons::CLIENT_ID,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_loads_modules_in_order_names_nics_and_says_ready() {
        let s = init_script(&["nf_tables".into(), "nft_redir".into()]);
        assert!(s.starts_with("#!/bin/busybox sh\n"));
        let tables = s
            .find("insmod /lib/modules/nf_tables.ko")
            .expect("nf_tables");
        let redir = s
            .find("insmod /lib/modules/nft_redir.ko")
            .expect("nft_redir");
        assert!(tables < redir);
        assert!(s.contains("52:54:00:4d:42:00) ip link set dev $n name br-lan ;;"));
        assert!(s.contains("52:54:00:4d:42:02) ip link set dev $n name wan2 ;;"));
        let ready = s.find(READY_LINE).expect("ready line");
        assert!(s.find("/dev/ttyS1 2>&1").is_some_and(|shell| shell < ready));
    }

    #[test]
    fn network_is_the_routers_ipv4_part() {
        let plan = Plan {
            rates: vec![0, 0],
            congestion_control: "reno".into(),
            tbf_latency_ms: 25,
            fast_open: true,
            agent_routing: true,
        };
        let s = network_script(&plan);
        assert!(s.contains("sysctl -q -w net.ipv4.ip_forward=1"));
        assert!(s.contains("ip addr add 192.168.50.1/24 dev br-lan"));
        assert!(s.contains("ip addr add 10.200.2.2/24 dev wan2"));
        assert!(s.contains("ip route replace default via 10.200.2.1 dev wan2 metric 20"));
        assert!(!s.contains("2001:db8"), "{s}");
    }

    #[test]
    fn uci_has_no_wan_section_and_the_bed_key() {
        let u = agent_uci(&"ab".repeat(32), "info");
        assert!(u.contains(&format!("option key '{}'", "ab".repeat(32))));
        assert!(u.contains("option host '192.0.2.1'"));
        assert!(!u.contains("config wan"));
    }
}
