//! mpbond's end-to-end test bed, its tools and the demo.
//!
//! Layout:
//! * [`netns`]: the [`Netns`] guard of `mpbond-testkit` (unique names, deleted on drop,
//!   even on panic).
//! * [`topology`]: the address plan, rendered as `ip`/`tc` scripts (pure, unit tested).
//! * [`bed`]: [`TestBed`], which builds the plan: lan, router, ISPs, core, vps, server.
//! * [`daemons`]: configs and `start_concentrator` / `start_agent` with `READY=1`.
//! * [`tools`]: the `mpbond-tb` server, fetch and Convert probe, driven in namespaces.
//! * [`datagen`], [`wire`]: the deterministic data and the tool protocol, shared
//!   by the library and `src/bin/mpbond-tb`.
//! * [`proc`]: child guards and polling with deadlines.
//! * [`delay`]: WAN link emulation, a userspace delay line spliced in at each ISP
//!   (delay, jitter, loss, outages, with counters).
//! * [`profiles`]: the named households of issue 11 (`dsl-lte`, `starlink`,
//!   `bad-backup`, `three`) and building a bed from one.
//! * [`shaping`]: the TBF shapers' queue bounded to a time at the rate
//!   ([`TestBed::bound_tbf_queues`]).
//! * [`loadgen`]: idle-connection swarms, time-to-first-byte runs, RSS.
//! * [`wans`]: changing WANs at run time (hotplug, link, carrier, DHCP
//!   renumbering, an ISP blackhole).
//! * [`failures`]: the household's WAN failures (black holes both ways or one way,
//!   link down) and paced small requests through them.
//! * [`agentstate`]: the agent's status document and the kernel state it owns.
//! * [`agentreload`]: rewriting a running agent's config and sending SIGHUP.
//! * [`capture`]: real status documents for the LuCI page's browser test.
//! * [`interrupt`]: the binaries' Ctrl-C handler, which removes the test bed.
//! * [`vm`]: the MIPS router VM (qemu-system-mipsel, Linux 6.1, the mipsel agent) as
//!   the bed's router, its NICs bridged to the bed's LAN and WAN veths.
//!
//! Binaries: `mpbond-tb` (serve / fetch / convert, see `src/bin/mpbond-tb`) and
//! `mpbond-demo`. Scripts: `setup.sh`, `run.sh`, `demo.sh`.
//!
//! Scenarios live in `tests/tests/*.rs`, one test bed each; they need root, so they
//! are `#[ignore = "needs root and netns"]` and `tests/run.sh` runs them as root with
//! `--include-ignored` (without root they fail, they never skip): `testbed` (the bed
//! itself and direct kernel MPTCP), `aggregation`, `integrity`, `ipv6`, `policy`, `fail_open`, `fallback`, and
//! `configs` (rendered configs pass the daemons' `check-config`, no root), and
//! the agent's control plane on a bed built with `agent_routing(true)`:
//! `control_hotplug`, `control_failover`, `control_backup`, `control_cleanup`,
//! `household` (every failure under paced requests and a download, recovery);
//! `mips_vm`: the same scenarios with the MIPS router VM ([`vm`]) as the router;
//! `wan_changes` checks the bed's WAN changes on their own; `link_emulation` checks
//! the delay line's fidelity (rate, RTT, loss, outages) and `profiles` the data path
//! on every link profile.
//! Set `MPBOND_BIN_DIR` to test other binaries, `MPBOND_TEST_LOG` for the
//! daemons' `RUST_LOG`, and `MPBOND_KEEP_TMP` to keep configs and logs.

pub mod agentreload;
pub mod agentstate;
pub mod bed;
pub mod capture;
pub mod daemons;
pub mod datagen;
pub mod delay;
pub mod error;
pub mod failures;
pub mod interrupt;
pub mod loadgen;
pub mod netns;
pub mod proc;
pub mod profiles;
pub mod second_vps;
pub mod shaping;
pub mod tools;
pub mod topology;
pub mod udp_tools;
pub mod vm;
pub mod wans;
pub mod wire;

pub use agentstate::{status_wan, OwnedState};
pub use bed::{wan_delta, TestBed, TestBedBuilder};
pub use daemons::{AgentConfig, ConcentratorConfig, Daemon, WanEntry};
pub use delay::{DelayLine, DelayStats, DirectionStats, WanDelays};
pub use error::BedError;
pub use failures::{Failure, PacedRun};
pub use netns::Netns;
pub use profiles::{LinkSpec, Outage, Profile};
pub use tools::{metric_sum, Fetch, FetchRun, TbServer};
pub use topology::Node;
pub use udp_tools::{QuicReport, QuicRun, UdpEchoReport, UdpEchoRun, UdpEchoServer};
pub use wire::{FetchReport, ServeEvent};

/// Kill and delete every namespace and scratch directory this process still
/// owns. For Ctrl-C handlers ([`interrupt`]): test beds clean up on drop otherwise.
pub fn cleanup_all() {
    netns::cleanup_registered();
    mpbond_testkit::tempdir::cleanup_registered();
}

/// Whether this process can build namespaces (effective uid 0).
pub use mpbond_testkit::is_root;
