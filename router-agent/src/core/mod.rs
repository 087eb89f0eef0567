//! The agent's decision core: the one owner of the state that steers failover.
//!
//! Sans-IO, in the style of `quinn-proto`: the shell ([`crate::driver`]) feeds it
//! [`Input`]s with the current time as a value, takes [`Action`]s out with
//! [`Core::poll_action`], and wakes it at [`Core::poll_timeout`] with
//! [`Core::handle_timeout`]. It imports no socket, no netlink and no clock.
//!
//! What it decides:
//! * **Which concentrator** new connections go to, when several are configured
//!   ([`concentrators::Concentrators`]): the first live one by priority; a failed probe or
//!   relayed connect moves them to the next at once, and they come back with hysteresis.
//! * **Fail open** ([`crate::model::FailOpen`]): whether LAN TCP is redirected. The
//!   concentrator probe over the main route is the evidence, and so is a recent success of
//!   any WAN's own probe (a dead WAN under the main route must not withdraw the redirect
//!   while another WAN still reaches the concentrator), and any other concentrator that
//!   answered its last probe: the agent fails open only when no concentrator answers.
//! * **When the concentrator is probed**: every `health.interval`, at once when a relayed
//!   connection could not reach the concentrator, never closer than [`MIN_PROBE_GAP`].
//!   A periodic probe is skipped while a WAN's own probe datagram or a WAN's live
//!   subflows showed the concentrator reachable within the fail-open window (or the
//!   WANs' longest idle probe interval plus timeout, if longer)
//!   ([`Input::WanReached`]): that TCP connection would say nothing new, and it was most
//!   of an idle router's cost. A nudged probe and a Fast Open retry are never skipped.
//! * **Fast Open**: on until a Fast Open connection comes back as plain TCP (the
//!   concentrator's kernel refused the data in the SYN), then off, retried by one probe
//!   every [`FASTOPEN_RETRY`].
//! * **Where new upstream connections start**: the address of the first live WAN
//!   ([`preferred_source`]), never a metered WAN held back, and the [`Hedge`] they open
//!   from the next WAN when the first gets no SYN-ACK within a bound from that WAN's RTT
//!   ([`hedge`]: Happy Eyeballs). A WAN a hedge won against starts no new connection for
//!   a while and is probed at once.
//! * **Which metered WANs are held back** ([`metered::MeteredPolicy`]): pure, run by the
//!   control plane's reconcile before the routing plan (it owns the WANs' health and the
//!   data usage), so a promotion happens in the reconcile that sees the last better WAN
//!   go down.
//! * **Which WANs hurt the bond** ([`path_quality::PathQuality`]): a far, slow or lossy
//!   WAN becomes a backup endpoint until it recovers, with hysteresis. Pure, fed every
//!   counter tick by the control plane and applied by its reconcile, like the metered
//!   policy.
//! * **The socket buffers of new upstream connections** ([`buffers::BufferSizing`]):
//!   2 × Σ WAN rate × the slowest RTT, from the per-WAN samples the control plane sends
//!   every counter tick ([`Input::PathSamples`]), within the kernel's limits
//!   ([`Core::set_kernel_buffer_limits`]); `[mptcp] buffers = "kernel"` leaves them to
//!   autotuning.
//! * **How much a bulk download may queue while a call runs**
//!   ([`latency_guard::LatencyGuard`], `[udp] latency_guard`): while a protected UDP flow
//!   is active ([`Input::ProtectedFlow`]), new upstream connections open with a receive
//!   buffer of Σ WAN rate × (base RTT + 10 ms) (published with the upstream choice, and
//!   as [`Action::BulkWindow`] for the live ones that opened no wider), and without Fast
//!   Open: the concentrator's kernel overruns a window narrowed after the SYN.
//! * **What a reload changes** ([`reload::Changes`]): only what differs between the
//!   running config and the new one is acted on; everything else, live connections
//!   included, is left alone.
//! * **Which UDP flows are real-time** ([`classify::Classifier`], `[udp] auto_protect`):
//!   small datagrams at a steady rate. Pure; each bonded UDP flow's task owns one and
//!   feeds it the flow's datagrams (too many to pass through this core one by one).
//!
//! The per-WAN routing decisions (`model::routing`, `model::wan`) and per-WAN health
//! (`model::wan_health` in [`crate::control::WanBook`]) are pure modules of their own, driven
//! by the control plane's reconcile; it reports the planned WANs here as
//! [`Input::WansPlanned`] and each WAN's probe success as [`Input::WanReached`].

pub mod buffers;
pub mod classify;
pub mod concentrators;
pub mod hedge;
pub mod latency_guard;
pub mod metered;
pub mod path_quality;
pub mod peak_rate;
pub mod protect;
pub mod reload;
mod source;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::model::plan::redirect_spec;
use crate::model::wan::Wan;
use crate::model::{FailOpen, LinkState, Probe};
use crate::nft::RedirectSpec;

pub use buffers::{KernelBufferLimits, SocketBuffers};
pub use hedge::{Hedge, HedgeOutcome};
pub use reload::Changes;
pub use source::preferred_source;

/// Probes asked for by the proxy are at least this far apart.
pub const MIN_PROBE_GAP: Duration = Duration::from_millis(250);
/// While Fast Open is off, one probe this often tries it again.
pub const FASTOPEN_RETRY: Duration = Duration::from_secs(60);
/// A refused nft update is retried after this long.
pub const REDIRECT_RETRY: Duration = Duration::from_secs(1);

/// What the shell tells the core.
#[derive(Debug, Clone)]
pub enum Input {
    /// The concentrator probe over the main route ended.
    ProbeDone {
        /// Its round trip, or why it failed (already logged by the shell).
        result: Result<Duration, String>,
        /// What the probe's connection said about Fast Open, if it used it.
        fastopen: Option<FastOpenEvidence>,
    },
    /// A relayed connection could not reach the concentrator: probe soon.
    UpstreamFailed,
    /// A relayed connection was made with Fast Open; did it stay MPTCP?
    UpstreamConnected(FastOpenEvidence),
    /// Some WAN's own probe datagram was answered, or a WAN's live subflows to the
    /// concentrator moved data without a stall, at this time.
    WanReached(Instant),
    /// WAN `wan`'s probe measured this handshake round trip (for the hedge bound).
    WanRtt { wan: String, rtt: Duration },
    /// A new connection opened a second attempt from another WAN ([`hedge`]).
    UpstreamHedged(HedgeOutcome),
    /// The control plane's reconcile planned these WANs (with their health).
    WansPlanned(Vec<Wan>),
    /// One sample per WAN from the control plane's counter tick (for the buffers).
    PathSamples(Vec<(String, path_quality::PathSample)>),
    /// The shell tried to bring the nft table to `spec`.
    RedirectApplied { spec: RedirectSpec, ok: bool },
    /// A new config, already parsed and validated, with the concentrator's addresses
    /// resolved (first = the one connections go to).
    Reload {
        config: Arc<Config>,
        concentrator: Vec<SocketAddr>,
    },
    /// A new config with every concentrator's addresses resolved (in the config's
    /// order, preferred first; first address = the one connections go to).
    ReloadAll {
        config: Arc<Config>,
        concentrators: Vec<Vec<SocketAddr>>,
    },
    /// A protected UDP flow started (`true`) or ended (for the latency guard).
    ProtectedFlow { started: bool },
    /// A standby concentrator's probe ([`Action::ProbeStandby`]) ended.
    ConcentratorProbed {
        name: String,
        result: Result<Duration, String>,
    },
}

/// A Fast Open connection's verdict: MPTCP survived the data in the SYN, or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastOpenEvidence {
    pub mptcp: bool,
}

/// What the core asks the shell to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Probe the concentrator over the main route now, with or without Fast Open.
    StartProbe { fastopen: bool },
    /// Probe a concentrator other than the active one (report with
    /// [`Input::ConcentratorProbed`]); several may run at once.
    ProbeStandby(concentrators::StandbyProbe),
    /// Bring the nft table in line with `spec` (atomically); report with
    /// [`Input::RedirectApplied`]. A different table name replaces the table.
    ApplyRedirect(RedirectSpec),
    /// New upstream connections use these settings from now on.
    PublishUpstream(UpstreamChoice),
    /// A reload changed these parts: the shell rebuilds only them.
    Reconfigure(Changes),
    /// Clamp the receive buffer of every live and new upstream connection, or release
    /// it ([`latency_guard`]); also the status's `latency_guard`.
    BulkWindow(latency_guard::GuardView),
    /// Something to log and show in the status.
    Notice(Notice),
}

/// The core's choices for new upstream connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamChoice {
    pub concentrator: SocketAddr,
    pub fastopen: bool,
    pub source: Option<IpAddr>,
    /// The second attempt when the first stays silent (None: no other WAN).
    pub hedge: Option<Hedge>,
    /// WAN addresses a connection waiting for its Convert reply must not wait on
    /// (`hedge::abandoned`): one whose subflows all start there moves to another WAN.
    pub abandoned: Vec<IpAddr>,
    /// WAN addresses a hedge won against lately (`Hedging::suspects`): a connection
    /// waiting for its reply whose subflows there are all stalled moves too.
    pub suspects: Vec<IpAddr>,
    /// Socket buffers (before `buffers::for_connection` adds the Fast Open one).
    pub buffers: SocketBuffers,
    /// The WANs that carry protected UDP flows' legs, best first (`protect`).
    pub legs: Vec<protect::LegSource>,
}

/// Things worth a log line (the shell picks the level) and a status field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Fail open: the redirect is withdrawn.
    FailOpen { up_for: Duration },
    /// The redirect is back.
    Redirecting { down_for: Duration },
    /// The main-route probe failed but a WAN probe reached the concentrator recently.
    ReachableViaWan,
    /// Fast Open on (it works again) or off (the concentrator refused data in the SYN).
    FastOpen { on: bool },
    /// New upstream connections start from this WAN address (None: the main route).
    Source(Option<IpAddr>),
    /// A WAN address gave no SYN-ACK within the hedge bound: a suspect for a while.
    HedgedAway { from: IpAddr, to: IpAddr },
    /// The concentrator probe's result, and whether the redirect is on, for the status.
    Probed {
        result: Result<Duration, String>,
        redirect: bool,
    },
    /// New connections go to another concentrator from now on (failover or return);
    /// comes after the [`Action::PublishUpstream`] with its address.
    ConcentratorChosen { name: String, addr: SocketAddr },
}

/// The main-route probe's schedule.
#[derive(Debug, Clone)]
struct ProbeClock {
    /// When the next periodic probe is due.
    next: Instant,
    /// When the last probe ended (for [`MIN_PROBE_GAP`]).
    last_end: Option<Instant>,
    /// A probe is running; no other starts until it ends.
    in_flight: bool,
    /// The next probe was asked for by a failed connection: it is not skipped.
    nudged: bool,
    /// When Fast Open was last tried while off.
    last_fastopen_try: Instant,
}

/// The decision core. See the module docs.
#[derive(Debug)]
pub struct Core {
    config: Arc<Config>,
    /// The concentrators, their liveness and the active one.
    concentrators: concentrators::Concentrators,
    /// Which concentrator the main probe in flight went to.
    main_target: Option<String>,
    failopen: FailOpen,
    probe: ProbeClock,
    fastopen: bool,
    /// The kernel can carry data in an MPTCP SYN (`set_kernel_fastopen`); without it
    /// Fast Open is never tried.
    kernel_fastopen: bool,
    /// The last time a WAN's own probe reached the concentrator.
    wan_reached: Option<Instant>,
    wans: Vec<Wan>,
    source: Option<IpAddr>,
    hedge: Option<Hedge>,
    abandoned: Vec<IpAddr>,
    suspects: Vec<IpAddr>,
    hedging: hedge::Hedging,
    sizing: buffers::BufferSizing,
    buffer_limits: KernelBufferLimits,
    buffers: SocketBuffers,
    /// Where protected UDP flows' legs go, best first.
    legs: Vec<protect::LegSource>,
    /// The bulk connections' receive window while a protected flow runs, and what was
    /// last published of it.
    guard: latency_guard::LatencyGuard,
    guard_view: latency_guard::GuardView,
    /// The table as the kernel has it (None: the shell has not confirmed one yet).
    applied: Option<RedirectSpec>,
    /// A refused nft update waits until then.
    redirect_retry: Option<Instant>,
    actions: VecDeque<Action>,
}

impl Core {
    /// Start from the first probe's verdict (`first_ok`) and the table the shell created
    /// from it ([`Core::initial_spec`]).
    pub fn new(
        config: Arc<Config>,
        concentrator: Vec<SocketAddr>,
        first_ok: bool,
        now: Instant,
    ) -> Core {
        Core::with_concentrators(config, vec![concentrator], first_ok, now)
    }

    /// [`Core::new`] with every concentrator's addresses (in the config's order, the
    /// preferred one first, whose first probe said `first_ok`).
    pub fn with_concentrators(
        config: Arc<Config>,
        resolved: Vec<Vec<SocketAddr>>,
        first_ok: bool,
        now: Instant,
    ) -> Core {
        let concentrators = concentrator_list(&config, resolved, first_ok, now);
        let unmeasured = buffers::unmeasured(config.mptcp.buffers, KernelBufferLimits::default());
        let failopen = FailOpen::new(
            Probe::from(first_ok),
            config.health.down_after,
            config.health.up_after,
            now,
        );
        let mut core = Core {
            probe: ProbeClock {
                next: now + config.health.interval,
                last_end: Some(now),
                in_flight: false,
                nudged: false,
                last_fastopen_try: now,
            },
            config,
            concentrators,
            main_target: None,
            failopen,
            fastopen: true,
            kernel_fastopen: true,
            wan_reached: None,
            wans: Vec::new(),
            source: None,
            hedge: None,
            abandoned: Vec::new(),
            suspects: Vec::new(),
            hedging: hedge::Hedging::default(),
            sizing: buffers::BufferSizing::default(),
            buffer_limits: KernelBufferLimits::default(),
            buffers: unmeasured,
            legs: Vec::new(),
            guard: latency_guard::LatencyGuard::default(),
            guard_view: latency_guard::GuardView::default(),
            applied: None,
            redirect_retry: None,
            actions: VecDeque::new(),
        };
        core.applied = Some(core.desired_spec());
        core.guard_view = core.guard_view_at(now);
        core
    }

    /// The table for a config, its concentrator addresses and a first probe's verdict:
    /// what the shell creates before the core runs.
    pub fn initial_spec(
        config: &Config,
        concentrator: &[SocketAddr],
        first_ok: bool,
    ) -> RedirectSpec {
        let ips: Vec<IpAddr> = concentrator.iter().map(SocketAddr::ip).collect();
        redirect_spec(config, &ips, first_ok)
    }

    /// Whether the kernel can do Fast Open on MPTCP (the shell's feature probe, once at
    /// start). Without it new connections and probes never try it, and no retry does.
    pub fn set_kernel_fastopen(&mut self, available: bool) {
        self.kernel_fastopen = available;
        if !available && self.fastopen {
            self.fastopen = false;
            self.publish_upstream();
        }
    }

    /// The kernel's autotuning maxima (`tcp_rmem`/`tcp_wmem`, read by the shell at
    /// start): no buffer chosen exceeds them.
    /// Until the first counter tick, new connections get the buffers for nothing measured.
    pub fn set_kernel_buffer_limits(&mut self, limits: KernelBufferLimits) {
        self.buffer_limits = limits;
        let buffers = buffers::unmeasured(self.config.mptcp.buffers, limits);
        if buffers != self.buffers {
            self.buffers = buffers;
            self.publish_upstream();
        }
    }

    /// The running config.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The address upstream connections go to.
    pub fn concentrator(&self) -> SocketAddr {
        self.concentrators.active_addr()
    }

    /// The name of the concentrator that `addr` belongs to.
    pub fn concentrator_name(&self, addr: SocketAddr) -> Option<&str> {
        self.concentrators.name_of(addr)
    }

    /// Every concentrator's address (flattened, preferred first).
    pub fn concentrator_addrs(&self) -> Vec<SocketAddr> {
        self.concentrators.all_addrs()
    }

    /// Every concentrator with its state and RTT, for the status.
    pub fn concentrator_views(&self) -> Vec<concentrators::ConcentratorView> {
        self.concentrators.views()
    }

    /// What new upstream connections use now.
    pub fn upstream(&self) -> UpstreamChoice {
        UpstreamChoice {
            concentrator: self.concentrator(),
            // While the latency guard clamps, new connections do without Fast Open: the
            // concentrator would overrun a Fast Open connection's clamped window
            // (`latency_guard`, docs/DESIGN.md "Fast Open on MPTCP").
            fastopen: self.fastopen && self.guard_view.clamp.is_none(),
            source: self.source,
            hedge: self.hedge,
            abandoned: self.abandoned.clone(),
            suspects: self.suspects.clone(),
            // A new connection opens with the clamp as its receive buffer: the window
            // its SYN announces then never shrinks. Opened wide and clamped afterwards,
            // the concentrator overruns it and the download stalls.
            buffers: SocketBuffers {
                rcvbuf: self.guard_view.clamp.or(self.buffers.rcvbuf),
                ..self.buffers
            },
            legs: self.legs.clone(),
        }
    }

    /// Whether the redirect is on (the fail-open verdict).
    pub fn redirecting(&self) -> bool {
        self.failopen.state() == LinkState::Up
    }

    /// The next action for the shell, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When the core wants [`Core::handle_timeout`] called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let probe = (!self.probe.in_flight).then_some(self.probe.next);
        let standby = self.concentrators.next_deadline();
        [
            probe,
            standby,
            self.redirect_retry,
            self.hedging.next_expiry(),
            self.guard.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Time has passed: start a due probe, retry a refused table update, let a suspect
    /// WAN start connections again.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.redirect_retry.is_some_and(|at| at <= now) {
            self.redirect_retry = None;
            self.sync_redirect();
        }
        if !self.probe.in_flight && self.probe.next <= now {
            let retry_fastopen = self.kernel_fastopen
                && !self.fastopen
                && now.saturating_duration_since(self.probe.last_fastopen_try) >= FASTOPEN_RETRY;
            if self.vouched_by_wan(now) && !self.probe.nudged && !retry_fastopen {
                self.probe.next = now + self.config.health.interval;
                self.judge(Probe::from(true), now);
                self.sync_redirect();
            } else {
                self.start_probe(now);
            }
        }
        if self.hedging.expire(now) {
            self.choose_source(now);
        }
        for probe in self.concentrators.due_probes(now) {
            self.actions.push_back(Action::ProbeStandby(probe));
        }
        if self.guard.next_deadline().is_some_and(|at| at <= now) {
            self.guard.expire(now);
            self.choose_guard(now);
        }
    }

    /// How long a WAN's evidence of the concentrator counts: the fail-open window, or a
    /// WAN's idle probe interval plus its timeout if that is longer (so a router whose
    /// WANs are probed rarely, metered ones, does not fall back to a TCP probe a
    /// second). A dead concentrator is still noticed at once by a failed connection.
    fn wan_window(&self) -> Duration {
        let health = &self.config.health;
        let failopen = health.interval * health.down_after + health.timeout;
        let wan = &self.config.wan;
        let idle = wan
            .wans
            .iter()
            .map(|w| &w.probe)
            .chain(std::iter::once(&wan.default_probe))
            .map(|p| p.idle_interval + p.timeout)
            .max()
            .unwrap_or_default();
        failopen.max(idle)
    }

    /// A WAN reached the concentrator within the fail-open window.
    fn vouched_by_wan(&self, now: Instant) -> bool {
        self.wan_reached
            .is_some_and(|at| now.saturating_duration_since(at) <= self.wan_window())
    }

    /// Feed the fail-open state one verdict; a change is a notice.
    fn judge(&mut self, verdict: Probe, now: Instant) {
        if let Some(t) = self.failopen.on_probe(verdict, now) {
            let notice = match t.to {
                LinkState::Down => Notice::FailOpen { up_for: t.after },
                LinkState::Up => Notice::Redirecting { down_for: t.after },
            };
            self.actions.push_back(Action::Notice(notice));
        }
    }

    /// Feed one input.
    pub fn handle(&mut self, input: Input, now: Instant) {
        match input {
            Input::ProbeDone { result, fastopen } => self.on_probe(result, fastopen, now),
            Input::UpstreamFailed => {
                let active = self.concentrators.active_name().to_owned();
                if self.concentrators.on_failure(&active, now) {
                    self.active_changed(now);
                }
                self.nudge_probe(now);
            }
            Input::ConcentratorProbed { name, result } => self.on_standby_probe(name, result, now),
            Input::ReloadAll {
                config,
                concentrators,
            } => self.reload_all(config, concentrators, now),
            Input::UpstreamConnected(evidence) => self.learn_fastopen(evidence),
            Input::WanReached(at) => {
                self.wan_reached = Some(self.wan_reached.map_or(at, |last| last.max(at)));
            }
            Input::WanRtt { wan, rtt } => {
                self.hedging.record_rtt(&wan, rtt);
                self.choose_source(now);
            }
            Input::UpstreamHedged(outcome) => self.on_hedged(outcome, now),
            Input::WansPlanned(wans) => {
                self.hedging.retain_wans(&wans);
                self.wans = wans;
                self.choose_source(now);
            }
            Input::PathSamples(samples) => {
                self.sizing.observe(&samples, now);
                self.guard.observe(&samples, now);
                self.choose_buffers(now);
                self.choose_guard(now);
            }
            Input::ProtectedFlow { started } => {
                let release = self.guard_view_at(now).release;
                self.guard.note_release(release);
                self.guard.flow(started, now);
                self.choose_guard(now);
            }
            Input::RedirectApplied { spec, ok } => {
                if ok {
                    self.applied = Some(spec);
                } else {
                    self.redirect_retry = Some(now + REDIRECT_RETRY);
                }
            }
            Input::Reload {
                config,
                concentrator,
            } => self.reload_all(config, vec![concentrator], now),
        }
    }

    fn start_probe(&mut self, now: Instant) {
        let mut fastopen = self.fastopen;
        if self.kernel_fastopen
            && !fastopen
            && now.saturating_duration_since(self.probe.last_fastopen_try) >= FASTOPEN_RETRY
        {
            fastopen = true;
            self.probe.last_fastopen_try = now;
        }
        self.probe.in_flight = true;
        self.probe.nudged = false;
        self.main_target = Some(self.concentrators.active_name().to_owned());
        self.actions.push_back(Action::StartProbe { fastopen });
    }

    /// Probe as soon as the gap since the last probe allows.
    fn nudge_probe(&mut self, now: Instant) {
        let earliest = self.probe.last_end.map_or(now, |end| end + MIN_PROBE_GAP);
        self.probe.next = self.probe.next.min(earliest.max(now));
        self.probe.nudged = true;
    }

    fn on_probe(
        &mut self,
        result: Result<Duration, String>,
        fastopen: Option<FastOpenEvidence>,
        now: Instant,
    ) {
        self.probe.in_flight = false;
        self.probe.last_end = Some(now);
        self.probe.next = now + self.config.health.interval;
        if let Some(evidence) = fastopen {
            self.learn_fastopen(evidence);
        }
        let target = self
            .main_target
            .take()
            .unwrap_or_else(|| self.concentrators.active_name().to_owned());
        let changed = match &result {
            Ok(rtt) => self.concentrators.on_success(&target, *rtt, now),
            Err(_) => self.concentrators.on_failure(&target, now),
        };
        self.concentrators
            .probe_ended(&target, self.config.health.interval, now);
        if changed {
            self.active_changed(now);
        }
        let answering = self.concentrators.any_answering();
        let via_wan = result.is_err() && !answering && self.vouched_by_wan(now);
        if via_wan {
            self.actions
                .push_back(Action::Notice(Notice::ReachableViaWan));
        }
        self.judge(Probe::from(result.is_ok() || via_wan || answering), now);
        self.sync_redirect();
        self.actions.push_back(Action::Notice(Notice::Probed {
            result,
            redirect: self.redirecting(),
        }));
    }

    fn learn_fastopen(&mut self, evidence: FastOpenEvidence) {
        if self.fastopen == evidence.mptcp {
            return;
        }
        self.fastopen = evidence.mptcp;
        self.actions
            .push_back(Action::Notice(Notice::FastOpen { on: self.fastopen }));
        self.publish_upstream();
    }

    fn choose_source(&mut self, now: Instant) {
        let (source, hedge) = self.hedging.choose(&self.wans, self.concentrator(), now);
        let legs = protect::leg_sources(&self.wans, &self.hedging, self.concentrator());
        let abandoned = hedge::abandoned(&self.wans, self.concentrator());
        let suspects = self.hedging.suspects(now);
        let changed = (source, hedge) != (self.source, self.hedge)
            || legs != self.legs
            || abandoned != self.abandoned
            || suspects != self.suspects;
        self.legs = legs;
        self.abandoned = abandoned;
        self.suspects = suspects;
        if source != self.source {
            self.source = source;
            self.actions
                .push_back(Action::Notice(Notice::Source(source)));
        }
        if changed {
            self.hedge = hedge;
            self.publish_upstream();
        }
    }

    /// Publish the buffers the samples call for, if they changed.
    fn choose_buffers(&mut self, now: Instant) {
        let mode = self.config.mptcp.buffers;
        let buffers = self.sizing.choose(mode, self.buffer_limits, now);
        if buffers != self.buffers {
            self.buffers = buffers;
            self.publish_upstream();
        }
    }

    /// Publish the latency guard's view if it changed: what a connection gets unclamped
    /// is what a new one gets ([`buffers::for_connection`]), else the kernel's maximum.
    /// The paths' window alone changes no clamp while none is held: it is not a reason
    /// to publish.
    fn choose_guard(&mut self, now: Instant) {
        let view = self.guard_view_at(now);
        let key = |v: &latency_guard::GuardView| {
            (v.enabled, v.protected_flows, v.clamp, v.release, v.pace)
        };
        if key(&view) != key(&self.guard_view) {
            let clamp_changed = view.clamp != self.guard_view.clamp;
            self.guard_view = view;
            self.actions.push_back(Action::BulkWindow(view));
            if clamp_changed {
                self.publish_upstream();
            }
        }
    }

    fn guard_view_at(&self, now: Instant) -> latency_guard::GuardView {
        let release = buffers::for_connection(self.buffers, self.fastopen)
            .rcvbuf
            .or(self.buffer_limits.rmem_max)
            .unwrap_or(buffers::FASTOPEN_RCVBUF);
        self.guard.view(self.config.udp.latency_guard, release, now)
    }

    /// Turn the latency guard's read pacing on (the default) or off (`MPBOND_GUARD_PACE=0`,
    /// read by the shell at start); the view published, and so the status, says `pace:
    /// None` while it is off.
    pub fn set_guard_pacing(&mut self, on: bool, now: Instant) {
        self.guard.set_pacing(on);
        self.choose_guard(now);
    }

    /// The latency guard as last published.
    pub fn latency_guard(&self) -> latency_guard::GuardView {
        self.guard_view
    }

    /// A hedge won: the slow WAN is a suspect (new connections start elsewhere) and the
    /// concentrator is probed soon.
    fn on_hedged(&mut self, outcome: HedgeOutcome, now: Instant) {
        if !outcome.hedge_won {
            return;
        }
        if let Some(from) = outcome.primary {
            if self.hedging.on_outcome(outcome, now) {
                self.actions.push_back(Action::Notice(Notice::HedgedAway {
                    from,
                    to: outcome.hedge,
                }));
                self.choose_source(now);
            }
        }
        self.nudge_probe(now);
    }

    fn publish_upstream(&mut self) {
        self.actions
            .push_back(Action::PublishUpstream(self.upstream()));
    }

    fn desired_spec(&self) -> RedirectSpec {
        Core::initial_spec(
            &self.config,
            &self.concentrators.all_addrs(),
            self.redirecting(),
        )
    }

    /// Ask for the table the verdict and the config want, unless the kernel has it.
    fn sync_redirect(&mut self) {
        let want = self.desired_spec();
        if self.applied.as_ref() != Some(&want) && self.redirect_retry.is_none() {
            self.actions.push_back(Action::ApplyRedirect(want));
        }
    }

    /// A standby's probe ended: its liveness, maybe a new active one, and the redirect
    /// back on when it answers while nothing else did.
    fn on_standby_probe(&mut self, name: String, result: Result<Duration, String>, now: Instant) {
        let changed = match &result {
            Ok(rtt) => self.concentrators.on_success(&name, *rtt, now),
            Err(_) => self.concentrators.on_failure(&name, now),
        };
        self.concentrators
            .probe_ended(&name, self.config.health.interval, now);
        if changed {
            self.active_changed(now);
        }
        if result.is_ok() && !self.redirecting() {
            self.judge(Probe::from(true), now);
            self.sync_redirect();
        }
    }

    /// New connections go to another concentrator: learn Fast Open afresh for it.
    fn active_changed(&mut self, now: Instant) {
        self.fastopen = self.kernel_fastopen;
        self.choose_source(now);
        self.publish_upstream();
        // After the new parameters: the shell acts on the notice with them in place.
        let name = self.concentrators.active_name().to_owned();
        let addr = self.concentrators.active_addr();
        self.actions
            .push_back(Action::Notice(Notice::ConcentratorChosen { name, addr }));
    }

    fn reload_all(&mut self, config: Arc<Config>, resolved: Vec<Vec<SocketAddr>>, now: Instant) {
        if resolved.first().map_or(true, Vec::is_empty) {
            return; // The shell never sends this; an empty list changes nothing.
        }
        let old_addrs = self.concentrators.all_addrs();
        let new_addrs: Vec<SocketAddr> = resolved.iter().flatten().copied().collect();
        let changes = Changes::between(&self.config, &config, &old_addrs, &new_addrs);
        if changes.is_empty() {
            return;
        }
        self.config = config;
        if changes.concentrator {
            let ok = self.redirecting();
            self.concentrators = concentrator_list(&self.config, resolved, ok, now);
            // A new concentrator: learn Fast Open afresh and probe it at once.
            self.fastopen = self.kernel_fastopen;
            self.choose_source(now);
            self.nudge_probe(now);
        }
        if changes.health {
            let h = &self.config.health;
            self.failopen.set_thresholds(h.down_after, h.up_after);
            if !self.probe.in_flight {
                self.probe.next = self.probe.next.min(now + h.interval);
            }
        }
        if changes.upstream() {
            self.publish_upstream();
        }
        self.choose_buffers(now);
        self.choose_guard(now);
        self.redirect_retry = None;
        self.sync_redirect();
        self.actions.push_back(Action::Reconfigure(changes));
    }
}

/// The config's concentrators (names, preferred first) with their resolved addresses.
fn concentrator_list(
    config: &Config,
    resolved: Vec<Vec<SocketAddr>>,
    first_ok: bool,
    now: Instant,
) -> concentrators::Concentrators {
    let names = config.concentrators.iter().map(|c| c.name.clone());
    concentrators::Concentrators::new(names.zip(resolved).collect(), first_ok, now)
}
