//! Case 6, scale: how much memory idle relayed connections cost.
//!
//! * The concentrator holds N idle relayed connections (10,000 full, 1,000
//!   short). A load tool in the router namespace opens them straight to it,
//!   without the agent: MPTCP with a sealed Convert `Connect` in the SYN, each
//!   relayed to a `mpbond-tb hold` server on the internet side, which greets
//!   it with one byte so it only counts once relayed end to end. The
//!   connections are spread over several client ids, each under the
//!   concentrator's per-client limit, one `mpbond-tb swarm` process per client id
//!   (2,500 descriptors each, well under the 20,000 `RLIMIT_NOFILE` of this
//!   machine). Reported: idle RSS, RSS per connection ((RSS at N − idle RSS) / N),
//!   descriptors per connection ((open at N − open idle) / N, from
//!   `/proc/PID/fd`: an idle relay holds its two sockets and no pipe) and the accept
//!   rate. The concentrator raises its soft `RLIMIT_NOFILE` to the hard limit at start;
//!   the case checks `/proc/PID/limits` says so.
//! * The agent holds 2,000 (500 short) plain LAN connections through its
//!   redirect: idle RSS and RSS at that load.
//!
//! RSS counts the file-backed pages of the binary and its shared libraries,
//! so it depends on how the daemons are linked. OpenWrt runs static musl
//! builds, so the case measures `cross/build.sh`'s x86_64 binaries
//! (`target/cross/x86_64/`, or `$MPBOND_CROSS_DIR/x86_64/`) when they exist,
//! and the host's release build (dynamic glibc: about 1.6 MiB more
//! file-backed RSS) otherwise; each figure's detail says which.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use mpbond_tests::loadgen::{raise_nofile, rss_kib, Swarm, SwarmTarget};
use mpbond_tests::topology::{SERVER_V4, VPS_V4};
use mpbond_tests::{Node, TestBed};

use crate::ctx::{BenchError, Ctx};
use crate::descriptors::Descriptors;
use crate::report::{Figure, Target};
use crate::stat::Steal;

const CASE: &str = "6 scale";
const HOLD_PORT: u16 = 5601;
/// Per-source limits for a load generator (at most `max_connections`, 20,000 in the
/// bed): unauthenticated connections, new connections a second, burst.
const LOAD_FROM_ONE_SOURCE: (u64, u64, u64) = (20_000, 1_000_000, 1_000_000);

/// Connections per client id: under the bed's `max_connections_per_client` (4000).
const PER_CLIENT: usize = 2500;
/// Descriptors the concentrator holds per idle relayed connection: two sockets
/// (the splice pipes are held only while data moves; `relay::pool`).
const FDS_PER_CONN: usize = 2;
/// Descriptors left for everything else besides what the idle concentrator has open:
/// the relay's pool of idle pipes (64 pipes, `relay::pool`) and a margin.
const FD_SPARE: usize = 2 * 64 + 16;
/// Agent idle RSS target, KiB.
pub const AGENT_IDLE_KIB: f64 = 4096.0;
/// Concentrator RSS per idle relayed connection target, KiB.
pub const CONC_PER_CONN_KIB: f64 = 32.0;
/// Concentrator descriptors per idle relayed connection target.
pub const CONC_FDS_PER_CONN: f64 = 2.1;

/// Run case 6.
pub fn run(ctx: &Ctx) -> Result<Vec<Figure>, BenchError> {
    // Each idle relayed connection costs the concentrator 2 sockets, the holder
    // and the swarm one socket each; children inherit the raised limit.
    let nofile = raise_nofile(100_000)
        .map_err(|e| BenchError::measure(CASE, format!("RLIMIT_NOFILE: {e}")))?;
    let wanted: usize = ctx.pick(1000, 10_000);
    let n_agent: usize = ctx.pick(500, 2000);
    let (_bins, build) = static_bins(ctx)?;
    let bed = TestBed::builder().wans(&[0, 0]).try_build()?;
    let hold_addr = SocketAddr::new(SERVER_V4.into(), HOLD_PORT);
    let holder = bed.hold(Node::Server, hold_addr)?;
    // The concentrator wants a key of its own for every client.
    let clients = (0..wanted.div_ceil(PER_CLIENT))
        .map(|k| Ok((format!("scale{k}"), random_key()?)))
        .collect::<Result<Vec<(String, String)>, BenchError>>()?;
    let mut cfg = bed.concentrator_config();
    cfg.clients.extend(clients.iter().cloned());
    // Every swarm connection comes from one address: lift the per-source limits.
    cfg.per_source = Some(LOAD_FROM_ONE_SOURCE);
    // Started with a low soft limit, so only its own raise at start lets it hold N.
    let conc = with_low_soft_nofile(nofile, || bed.start_concentrator(&cfg))?;
    let conc_nofile = soft_nofile(conc.pid())?;
    if conc_nofile < nofile {
        return Err(BenchError::measure(
            CASE,
            format!("the concentrator's soft RLIMIT_NOFILE is {conc_nofile}, not {nofile}"),
        ));
    }
    let mut figures = Vec::new();

    let steal = Steal::start();
    let idle = rss(conc.pid())?;
    let conc_fds = Descriptors::before(CASE, conc.pid())?;
    let idle_fds = conc_fds.idle();
    // Without CAP_SYS_RESOURCE the hard limit caps how many a process can hold: with
    // 20,000, two sockets each and the daemon's own descriptors, a little under 10,000.
    let fit = usize::try_from(nofile)
        .unwrap_or(usize::MAX)
        .saturating_sub(idle_fds + FD_SPARE)
        / FDS_PER_CONN;
    let n_conc = wanted.min(fit);
    let mut swarms: Vec<Swarm> = Vec::new();
    let (mut opened, mut seconds) = (0usize, 0.0f64);
    for (k, (client, key)) in clients.iter().enumerate() {
        let count = PER_CLIENT.min(n_conc.saturating_sub(k * PER_CLIENT));
        if count == 0 {
            break;
        }
        let target = SwarmTarget::Convert {
            concentrator: SocketAddr::new(VPS_V4.into(), mpbond_protocol::DEFAULT_PORT),
            dest: hold_addr,
            client: client.clone(),
            key_hex: key.clone(),
        };
        let swarm = bed.swarm(Node::Router, &target, count, Duration::from_secs(120))?;
        let r = &swarm.report;
        if r.failed > 0 {
            return Err(BenchError::measure(
                CASE,
                format!(
                    "{} of {count} concentrator connections failed: {}\n{}",
                    r.failed,
                    r.first_error.as_deref().unwrap_or("?"),
                    conc.log_tail(10)
                ),
            ));
        }
        opened += r.opened;
        seconds += r.seconds;
        swarms.push(swarm);
    }
    let loaded = rss(conc.pid())?;
    let fds = conc_fds.open()?;
    let per_conn = (loaded.saturating_sub(idle)) as f64 / opened.max(1) as f64;
    let fds_per_conn = conc_fds.per_conn(fds, opened);
    let rate = opened as f64 / seconds.max(1e-9);
    let steal_pct = steal.percent();
    figures.push(fig(
        "concentrator idle RSS",
        idle as f64,
        "KiB",
        None,
        steal_pct,
        build.clone(),
    ));
    figures.push(fig(
        &format!("concentrator RSS per idle relayed connection (N = {opened})"),
        round2(per_conn),
        "KiB",
        Some(Target::AtMost(CONC_PER_CONN_KIB)),
        steal_pct,
        format!(
            "RSS {idle} KiB idle, {loaded} KiB with {opened} connections ({wanted} wanted; \
             RLIMIT_NOFILE {nofile} allows {fit}); {fds} open descriptors; {build}"
        ),
    ));
    figures.push(fig(
        &format!("concentrator descriptors per idle relayed connection (N = {opened})"),
        round2(fds_per_conn),
        "fds",
        Some(Target::AtMost(CONC_FDS_PER_CONN)),
        steal_pct,
        format!(
            "{idle_fds} open idle, {fds} with {opened} connections (/proc/PID/fd); \
             soft RLIMIT_NOFILE {conc_nofile}"
        ),
    ));
    figures.push(fig(
        "concentrator accept rate (authenticated Convert, relayed)",
        rate.round(),
        "conn/s",
        None,
        steal_pct,
        format!(
            "{opened} connections in {seconds:.2} s, {} sequential openers",
            clients.len()
        ),
    ));
    // The holder never closes, so relays it holds outlive their clients: start
    // afresh, or the concentrator runs out of descriptors in the agent's half.
    drop(swarms);
    drop(holder);
    drop(conc);
    let _holder = bed.hold(Node::Server, hold_addr)?;
    let mut cfg = bed.concentrator_config();
    // The router's relayed connections come from its two WAN addresses.
    cfg.per_source = Some(LOAD_FROM_ONE_SOURCE);
    let _conc = bed.start_concentrator(&cfg)?;

    let steal = Steal::start();
    let mut cfg = bed.agent_config();
    // The bed's quick probes (300 ms, 1 s timeout, down after 2) can miss during the
    // burst of connects and fail open half-way; this case is about memory.
    (
        cfg.health_interval_ms,
        cfg.health_timeout_ms,
        cfg.down_after,
    ) = (1000, 5000, 3);
    let agent = bed.start_agent(&cfg)?;
    let agent_idle = rss(agent.pid())?;
    let swarm = bed.swarm(
        Node::Lan,
        &SwarmTarget::Plain(hold_addr),
        n_agent,
        Duration::from_secs(120),
    )?;
    if swarm.report.failed > 0 {
        return Err(BenchError::measure(
            CASE,
            format!(
                "{} of {n_agent} agent connections failed: {}\n{}",
                swarm.report.failed,
                swarm.report.first_error.as_deref().unwrap_or("?"),
                agent.log_tail(10)
            ),
        ));
    }
    let agent_loaded = rss(agent.pid())?;
    let steal_pct = steal.percent();
    figures.push(fig(
        "agent idle RSS",
        agent_idle as f64,
        "KiB",
        Some(Target::AtMost(AGENT_IDLE_KIB)),
        steal_pct,
        build.clone(),
    ));
    let agent_per = agent_loaded.saturating_sub(agent_idle) as f64 / n_agent as f64;
    figures.push(fig(
        &format!("agent RSS with {n_agent} relayed connections"),
        agent_loaded as f64,
        "KiB",
        None,
        steal_pct,
        format!(
            "{:.2} KiB per connection; {:.0} conn/s through the redirect; {build}",
            agent_per, swarm.report.per_second
        ),
    ));
    Ok(figures)
}

/// Points `MPBOND_BIN_DIR` at a directory of the static x86_64 daemons (with
/// our `mpbond-tb`) while the guard lives, if `cross/build.sh` made them.
/// Returns the guard and a note saying which build is measured.
fn static_bins(ctx: &Ctx) -> Result<(Option<BinDirGuard>, String), BenchError> {
    let cross = crate::footprint::cross_dir().join("x86_64");
    let daemons = ["mpbond-agent", "mpbond-concentrator"];
    if !daemons.iter().all(|d| cross.join(d).is_file()) {
        let note = format!(
            "host release build ({}); static musl builds not found in {}",
            ctx.bin_dir.display(),
            cross.display()
        );
        return Ok((None, note));
    }
    let dir = ctx.out("static-bin");
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| BenchError::Io {
            what: "cannot link",
            path,
            source,
        }
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let links = daemons
        .iter()
        .map(|d| (cross.join(d), dir.join(d)))
        .chain([(ctx.bin("mpbond-tb")?, dir.join("mpbond-tb"))]);
    for (from, to) in links {
        let _ = std::fs::remove_file(&to);
        std::os::unix::fs::symlink(&from, &to).map_err(io(&to))?;
    }
    let note = format!("static musl x86_64 build from {}", cross.display());
    Ok((Some(BinDirGuard::set(&dir)), note))
}

/// Sets `MPBOND_BIN_DIR` and puts the old value back on drop. The suite runs
/// its cases one at a time on the main thread, which is the only one that
/// reads the environment (to spawn the daemons).
struct BinDirGuard {
    old: Option<std::ffi::OsString>,
}

impl BinDirGuard {
    fn set(dir: &Path) -> Self {
        let old = std::env::var_os("MPBOND_BIN_DIR");
        std::env::set_var("MPBOND_BIN_DIR", dir);
        Self { old }
    }
}

impl Drop for BinDirGuard {
    fn drop(&mut self) {
        match &self.old {
            Some(v) => std::env::set_var("MPBOND_BIN_DIR", v),
            None => std::env::remove_var("MPBOND_BIN_DIR"),
        }
    }
}

fn random_key() -> Result<String, BenchError> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key)
        .map_err(|e| BenchError::measure(CASE, format!("no randomness: {e}")))?;
    Ok(mpbond_tests::datagen::hex(&key))
}

fn rss(pid: u32) -> Result<u64, BenchError> {
    rss_kib(pid).ok_or_else(|| BenchError::measure(CASE, format!("no VmRSS for pid {pid}")))
}

/// Run `start` with this process's soft `RLIMIT_NOFILE` at 1024 (the usual default),
/// so a child started there inherits it, then put `restore` back.
fn with_low_soft_nofile<T>(
    restore: u64,
    start: impl FnOnce() -> Result<T, mpbond_tests::BedError>,
) -> Result<T, BenchError> {
    let set = |soft: u64| {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit read or write exactly one rlimit we own.
        let ok = unsafe {
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && {
                lim.rlim_cur = soft.min(lim.rlim_max);
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0
            }
        };
        if ok {
            Ok(())
        } else {
            Err(BenchError::measure(
                CASE,
                format!("setrlimit: {}", std::io::Error::last_os_error()),
            ))
        }
    };
    set(1024)?;
    let started = start();
    set(restore)?;
    Ok(started?)
}

/// The soft `Max open files` of `/proc/PID/limits`.
fn soft_nofile(pid: u32) -> Result<u64, BenchError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| BenchError::measure(CASE, format!("no open files limit for pid {pid}")))
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn fig(
    name: &str,
    value: f64,
    unit: &str,
    target: Option<Target>,
    steal_pct: f64,
    detail: String,
) -> Figure {
    Figure {
        case: CASE.into(),
        name: name.into(),
        value,
        unit: unit.into(),
        target,
        runs: vec![value],
        steal_pct,
        detail,
    }
}
