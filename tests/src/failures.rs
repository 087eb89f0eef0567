//! The household's failures, and the load that sees them.
//!
//! * [`Failure`]: how a WAN dies. A black hole in its ISP (both ways, or one direction
//!   only: the SYN reaches the concentrator but the SYN-ACK is lost, or the other way
//!   round), or its link going down. [`TestBed::fail_wan`] starts and ends each one.
//! * [`PacedRun`]: `mpbond-tb ttfb --every-ms` on the LAN client: a new small request
//!   every so often, each on its own connection, whatever the others do.

use std::net::SocketAddr;
use std::time::Duration;

use crate::bed::TestBed;
use crate::error::BedError;
use crate::loadgen::{first_line, parse, ttfb_args};
use crate::proc::ChildGuard;
use crate::topology::Node;
use crate::wire::TtfbReport;

/// The nft table of a one-direction black hole in an ISP namespace.
const ONE_WAY_TABLE: &str = "mpbond_tb_oneway";

/// How a WAN dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// Its ISP drops everything, both ways; the link stays up.
    Blackhole,
    /// Its ISP drops only what the router sends (upstream).
    UpstreamOnly,
    /// Its ISP drops only what comes back to the router (downstream): SYNs reach the
    /// concentrator, SYN-ACKs are lost.
    DownstreamOnly,
    /// The router's WAN link goes down (`ip link set wanN down`).
    LinkDown,
}

impl Failure {
    /// Every failure, in the order the tests and the bench run them.
    pub const ALL: [Failure; 4] = [
        Failure::Blackhole,
        Failure::UpstreamOnly,
        Failure::DownstreamOnly,
        Failure::LinkDown,
    ];

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Failure::Blackhole => "black hole",
            Failure::UpstreamOnly => "upstream-only black hole",
            Failure::DownstreamOnly => "downstream-only black hole",
            Failure::LinkDown => "link down",
        }
    }
}

impl TestBed {
    /// Start (`on`) or end failure `how` of WAN `i`.
    pub fn fail_wan(&self, i: usize, how: Failure, on: bool) -> Result<(), BedError> {
        match how {
            Failure::Blackhole => self.blackhole_wan(i, on),
            Failure::LinkDown => self.set_link(i, !on),
            Failure::UpstreamOnly => self.one_way_blackhole(i, true, on),
            Failure::DownstreamOnly => self.one_way_blackhole(i, false, on),
        }
    }

    /// ISP `i` drops what it forwards in one direction: from the router (`upstream`) or
    /// to it, its own traffic left alone. `on: false` removes the drop.
    pub fn one_way_blackhole(&self, i: usize, upstream: bool, on: bool) -> Result<(), BedError> {
        let isp = Node::Isp(i);
        let exists = self
            .exec(isp, "nft list tables")
            .is_ok_and(|t| t.contains(ONE_WAY_TABLE));
        if exists {
            self.exec(isp, &format!("nft delete table inet {ONE_WAY_TABLE}"))?;
        }
        if !on {
            return Ok(());
        }
        // The ISP's end of the router link is `cust`; upstream traffic comes in on it.
        let side = if upstream { "iifname" } else { "oifname" };
        let ruleset = format!(
            "table inet {ONE_WAY_TABLE} {{\n\tchain forward_drop {{\n\t\t\
             type filter hook forward priority -10; policy accept;\n\t\t\
             {side} \"cust\" drop\n\t}}\n}}\n"
        );
        self.nft(isp, &ruleset)
    }

    /// Start `mpbond-tb ttfb --every-ms` in `node`: `count` requests for `bytes` each to
    /// `to`, one started every `every`; each gives up after `timeout`.
    pub fn spawn_paced(
        &self,
        node: Node,
        to: SocketAddr,
        count: usize,
        every: Duration,
        bytes: u64,
        timeout: Duration,
    ) -> Result<PacedRun, BedError> {
        let mut args = ttfb_args(to, count, bytes);
        args.extend([
            "--every-ms".into(),
            every.as_millis().to_string(),
            "--timeout-secs".into(),
            timeout.as_secs().max(1).to_string(),
        ]);
        let child = self.tb_spawn(node, &args)?;
        let limit = every * count as u32 + timeout + Duration::from_secs(10);
        Ok(PacedRun { child, limit })
    }
}

/// A running `mpbond-tb ttfb --every-ms`.
#[derive(Debug)]
pub struct PacedRun {
    child: ChildGuard,
    limit: Duration,
}

impl PacedRun {
    /// Wait for its report.
    pub fn finish(mut self) -> Result<TtfbReport, BedError> {
        let line = first_line(&mut self.child, self.limit)?;
        parse(&self.child, &line)
    }
}
