//! Changing the router's WANs while the bed runs, the way the real world does:
//! hotplug and removal, link down and up, carrier loss, a DHCP address change,
//! and an ISP that silently drops everything.
//!
//! The router side only ever gets what DHCP and netifd would give it: a link,
//! its addresses and a main-table default route per WAN (metric
//! [`crate::topology::wan_metric`]). Per-WAN tables, rules and MPTCP endpoints are the agent's
//! job (see [`crate::TestBedBuilder::agent_routing`]).
//!
//! ```no_run
//! use mpbond_tests::TestBed;
//! let mut bed = TestBed::builder().wans(&[40]).agent_routing(true).build();
//! let i = bed.add_wan(60).unwrap();           // wan2, with its ISP behind it
//! bed.set_link(i, false).unwrap();            // ip link set wan2 down
//! bed.set_link(i, true).unwrap();             // up again, addresses and default back
//! bed.blackhole_wan(1, true).unwrap();        // ISP 1 drops everything
//! bed.remove_wan(i).unwrap();
//! ```

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use crate::bed::TestBed;
use crate::error::BedError;
use crate::netns::Netns;
use crate::proc;
use crate::topology::{
    core_wan_lines, router_default_lines, router_wan_lines, split_families, wan_isp_v4,
    wan_router_v4, wan_router_v6, Node, MAX_WANS,
};

const CMD_LIMIT: Duration = Duration::from_secs(30);
/// The nft table [`TestBed::blackhole_wan`] loads in an ISP's namespace.
pub const BLACKHOLE_TABLE: &str = "mpbt_blackhole";

impl TestBed {
    /// Hotplug a WAN shaped to `rate_mbit` (0 = unshaped): a new ISP namespace
    /// wired to the core, and `wan<i>` in the router with its addresses and
    /// main-table default route. Returns `i`.
    pub fn add_wan(&mut self, rate_mbit: u32) -> Result<usize, BedError> {
        let i = self.add_wan_link(rate_mbit)?;
        self.add_wan_addresses(i)?;
        Ok(i)
    }

    /// [`Self::add_wan`] without the router's addresses and default route:
    /// `wan<i>` is up but unnumbered until [`Self::add_wan_addresses`].
    pub fn add_wan_link(&mut self, rate_mbit: u32) -> Result<usize, BedError> {
        let i = self.plan.rates.len() + 1;
        if i > MAX_WANS {
            return Err(BedError::Usage(format!("at most {MAX_WANS} WANs")));
        }
        let isp = Node::Isp(i);
        self.nss.insert(isp, Netns::try_new(&isp.role())?);
        self.plan.rates.push(rate_mbit);
        let mut cmd = self.netns(isp)?.command("sysctl");
        cmd.arg("-q").arg("-w").args(self.plan.sysctls(isp));
        proc::run(cmd, None, CMD_LIMIT)?;
        self.veth(Node::Router, &format!("wan{i}"), isp, "cust")?;
        self.veth(isp, "uplink", Node::Core, &format!("isp{i}"))?;
        let isp_script = self.plan.ip_script(isp);
        self.ip_batch(isp, &isp_script, &self.plan.ip6_script(isp))?;
        let (core4, core6) = split_families(&core_wan_lines(i));
        self.ip_batch(Node::Core, &core4, &core6)?;
        self.ip_batch(Node::Router, &format!("link set wan{i} up\n"), "")?;
        let dev = format!("dev wan{i} ");
        let router_tc: String = self
            .plan
            .tc_script(Node::Router)
            .lines()
            .filter(|l| l.contains(&dev))
            .map(|l| format!("{l}\n"))
            .collect();
        for (node, tc) in [(isp, self.plan.tc_script(isp)), (Node::Router, router_tc)] {
            if !tc.is_empty() {
                let mut cmd = Command::new("tc");
                cmd.args(["-n", self.netns(node)?.name(), "-batch", "-"]);
                proc::run(cmd, Some(&tc), CMD_LIMIT)?;
            }
        }
        Ok(i)
    }

    /// Give the router's `wan<i>` its addresses and main-table default routes,
    /// as DHCP would.
    pub fn add_wan_addresses(&mut self, i: usize) -> Result<(), BedError> {
        self.wan_v4.remove(&i);
        let (v4, v6) = split_families(&router_wan_lines(i, false));
        self.ip_batch(Node::Router, &v4, &v6)
    }

    /// Unplug the highest-numbered WAN `i`: its router device and its ISP go.
    pub fn remove_wan(&mut self, i: usize) -> Result<(), BedError> {
        if i == 0 || i != self.plan.rates.len() {
            return Err(BedError::Usage(format!(
                "only the last WAN ({}) can be removed, not {i}",
                self.plan.rates.len()
            )));
        }
        self.ip_batch(Node::Router, &format!("link del wan{i}\n"), "")?;
        self.nss.remove(&Node::Isp(i));
        self.plan.rates.pop();
        self.wan_v4.remove(&i);
        Ok(())
    }

    /// `ip link set wan<i> down|up` in the router. Taking it up again restores
    /// what netifd would: the addresses (the kernel drops IPv6 ones on down)
    /// and the main-table default routes (the kernel flushes them on down).
    pub fn set_link(&self, i: usize, up: bool) -> Result<(), BedError> {
        self.wan_index(i)?;
        let state = if up { "up" } else { "down" };
        self.ip_batch(Node::Router, &format!("link set wan{i} {state}\n"), "")?;
        if up {
            let mut lines = vec![
                format!("addr replace {}/24 dev wan{i}", self.wan_v4(i)),
                format!("addr replace {}/64 dev wan{i} nodad", wan_router_v6(i)),
            ];
            lines.extend(router_default_lines(i, wan_isp_v4(i)));
            let (v4, v6) = split_families(&lines);
            self.ip_batch(Node::Router, &v4, &v6)?;
        }
        Ok(())
    }

    /// Carrier loss on `wan<i>`: ISP `i` takes its end of the cable down (or
    /// up). The router's device stays administratively up, its addresses and
    /// routes stay (marked `linkdown`).
    pub fn set_carrier(&self, i: usize, up: bool) -> Result<(), BedError> {
        self.wan_index(i)?;
        let state = if up { "up" } else { "down" };
        self.ip_batch(Node::Isp(i), &format!("link set cust {state}\n"), "")
    }

    /// Renumber `wan<i>` as a DHCP client would: drop the old IPv4 address,
    /// add `new` (which must be in 10.200.i.0/24, the prefix ISP `i` routes)
    /// and put the main-table default route back.
    pub fn change_wan_address(&mut self, i: usize, new: Ipv4Addr) -> Result<(), BedError> {
        self.wan_index(i)?;
        let o = new.octets();
        if o[..3] != wan_router_v4(i).octets()[..3] || matches!(o[3], 0 | 1 | 255) {
            return Err(BedError::Usage(format!(
                "{new} is not a host of 10.200.{i}.0/24 other than the ISP's .1"
            )));
        }
        let old = self.wan_v4(i);
        let mut lines = vec![
            format!("addr del {old}/24 dev wan{i}"),
            format!("addr add {new}/24 dev wan{i}"),
        ];
        lines.extend(router_default_lines(i, wan_isp_v4(i)));
        let (v4, v6) = split_families(&lines);
        self.ip_batch(Node::Router, &v4, &v6)?;
        self.wan_v4.insert(i, new);
        Ok(())
    }

    /// The router's current IPv4 address on `wan<i>`.
    pub fn wan_v4(&self, i: usize) -> Ipv4Addr {
        self.wan_v4
            .get(&i)
            .copied()
            .unwrap_or_else(|| wan_router_v4(i))
    }

    /// ISP `i` drops every packet, both ways and its own, while the link stays
    /// up (`on`), or forwards again (`off`).
    pub fn blackhole_wan(&self, i: usize, on: bool) -> Result<(), BedError> {
        self.wan_index(i)?;
        let isp = Node::Isp(i);
        let exists = self
            .exec(isp, "nft list tables")
            .is_ok_and(|t| t.contains(BLACKHOLE_TABLE));
        if exists {
            self.exec(isp, &format!("nft delete table inet {BLACKHOLE_TABLE}"))?;
        }
        if on {
            let chain = |name: &str, hook: &str| {
                format!(
                    "\tchain {name} {{\n\t\ttype filter hook {hook} priority -10; policy drop;\n\t}}\n"
                )
            };
            let ruleset = format!(
                "table inet {BLACKHOLE_TABLE} {{\n{}{}{}}}\n",
                chain("forward_drop", "forward"),
                chain("input_drop", "input"),
                chain("output_drop", "output")
            );
            self.nft(isp, &ruleset)?;
        }
        Ok(())
    }

    fn wan_index(&self, i: usize) -> Result<(), BedError> {
        if i == 0 || i > self.plan.rates.len() {
            return Err(BedError::Usage(format!(
                "no WAN {i}: the bed has {}",
                self.plan.rates.len()
            )));
        }
        Ok(())
    }

    fn veth(&self, a: Node, a_if: &str, b: Node, b_if: &str) -> Result<(), BedError> {
        let mut cmd = Command::new("ip");
        cmd.args(["-n", self.netns(a)?.name(), "link", "add", a_if]);
        cmd.args(["type", "veth", "peer", "name", b_if, "netns"]);
        cmd.arg(self.netns(b)?.name());
        proc::run(cmd, None, CMD_LIMIT).map(|_| ())
    }

    /// Run an `ip -batch` script and an `ip -6 -batch` script (either may be empty).
    pub(crate) fn ip_batch(&self, node: Node, v4: &str, v6: &str) -> Result<(), BedError> {
        let ns = self.netns(node)?.name().to_owned();
        for (family, script) in [(None, v4), (Some("-6"), v6)] {
            if script.is_empty() {
                continue;
            }
            let mut cmd = Command::new("ip");
            cmd.args(family);
            cmd.args(["-n", &ns, "-batch", "-"]);
            proc::run(cmd, Some(script), CMD_LIMIT)?;
        }
        Ok(())
    }
}
