//! Reloading a running agent the way `/etc/init.d/mpbond reload` does: its
//! config file rewritten in place, then SIGHUP; and reading what followed in
//! its log and status document.
//!
//! ```no_run
//! # use mpbond_tests::{agentreload::restart_signs, TestBed};
//! # let bed = TestBed::builder().build();
//! # let cfg = bed.agent_config();
//! let mut agent = bed.start_agent(&cfg).unwrap();
//! let mark = agent.log_mark();
//! agent.rewrite_config(&cfg.to_toml()).unwrap();
//! agent.sighup().unwrap();
//! assert!(restart_signs(&agent.log_since(mark)).is_empty());
//! ```

use std::path::Path;

use crate::daemons::Daemon;
use crate::error::BedError;

/// Words of the log lines the agent writes only when it stops (its
/// listeners, its control plane, its connections), or restarts on SIGHUP;
/// a reload applied in place writes none of them.
pub const RESTART_SIGNS: [&str; 4] = [
    "closing them",
    "config valid, restarting",
    "shutting down",
    "control plane cleaned up",
];

/// A position in a daemon's log, to read only what came after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogMark(usize);

impl Daemon {
    /// The config file the daemon was started with.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Replace the config file's text, atomically (a new file renamed over
    /// it, as `uci commit` does), without telling the daemon.
    pub fn rewrite_config(&self, text: &str) -> Result<(), BedError> {
        let io_err = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| BedError::Io { what, path, source }
        };
        let next = self.config.with_extension("next");
        std::fs::write(&next, text).map_err(io_err("cannot write", &next))?;
        std::fs::rename(&next, &self.config).map_err(io_err("cannot rename over", &self.config))
    }

    /// Send SIGHUP (what `reload` sends); an error if it is no longer running.
    pub fn sighup(&mut self) -> Result<(), BedError> {
        let pid = libc::pid_t::try_from(self.pid())
            .map_err(|_| BedError::Usage(format!("pid {} out of range", self.pid())))?;
        if !self.is_running() {
            return Err(BedError::Usage(format!(
                "cannot send SIGHUP: the daemon (pid {pid}) has exited; log tail:\n{}",
                self.log_tail(30)
            )));
        }
        // SAFETY: kill(2) has no memory-safety preconditions; the child is
        // running and not reaped, so the pid is still ours.
        unsafe { libc::kill(pid, libc::SIGHUP) };
        Ok(())
    }

    /// The end of the log now.
    pub fn log_mark(&self) -> LogMark {
        LogMark(self.log().len())
    }

    /// The log written after `mark`.
    pub fn log_since(&self, mark: LogMark) -> String {
        let log = self.log();
        log.get(mark.0..).unwrap_or_default().to_owned()
    }
}

/// The lines of `log` that show a stop or a restart ([`RESTART_SIGNS`]).
pub fn restart_signs(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| RESTART_SIGNS.iter().any(|w| l.contains(w)))
        .collect()
}

/// The lines of `log` at `level` (`DEBUG`, `INFO`, `WARN`, `ERROR`), as the
/// agent's text log writes it: the level is a word of its own after the
/// timestamp (colour codes, if any, aside).
pub fn lines_at_level<'a>(log: &'a str, level: &str) -> Vec<&'a str> {
    log.lines()
        .filter(|l| {
            without_colour(l)
                .split_whitespace()
                .take(3)
                .any(|w| w == level)
        })
        .collect()
}

/// `line` without ANSI colour sequences (`ESC [ ... m` and the like).
pub fn without_colour(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC '[' parameters, then one final byte in '@'..='~'.
            if chars.next() == Some('[') {
                for f in chars.by_ref() {
                    if ('@'..='~').contains(&f) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// `connections.active` and `connections.total` of a status document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionCounts {
    /// Relayed connections open now.
    pub active: u64,
    /// Connections relayed since the agent started.
    pub total: u64,
}

impl ConnectionCounts {
    /// Read them from a status document, if it has them.
    pub fn of(doc: &serde_json::Value) -> Option<Self> {
        let c = doc.get("connections")?;
        Some(Self {
            active: c.get("active")?.as_u64()?,
            total: c.get("total")?.as_u64()?,
        })
    }
}

/// The `wans[].name`s of a status document, sorted.
pub fn status_wan_names(doc: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = doc
        .get("wans")
        .and_then(|w| w.as_array())
        .into_iter()
        .flatten()
        .filter_map(|w| w.get("name")?.as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_lines_are_found_and_others_are_not() {
        let log = "2026-12-06T10:00:00.1Z  INFO mpbond_agent: control socket ready\n\
                   2026-12-06T10:00:01.2Z  INFO mpbond_agent: SIGHUP: config valid, restarting\n\
                   2026-12-06T10:00:06.3Z  WARN mpbond_agent: connections still open after 5s, closing them\n";
        let signs = restart_signs(log);
        assert_eq!(signs.len(), 2);
        assert!(signs[1].contains("closing them"));
        assert!(restart_signs("INFO mpbond_agent: config reloaded in place").is_empty());
    }

    #[test]
    fn levels_are_whole_words_near_the_start() {
        let log = "2026-12-06T10:00:00.1Z DEBUG mpbond_agent::wan_probe: probe answered\n\
                   2026-12-06T10:00:00.2Z  INFO mpbond_agent: a DEBUG word later on a line\n";
        assert_eq!(lines_at_level(log, "DEBUG").len(), 1);
        let coloured = "\u{1b}[2m2026-12-06T10:45:55.3Z\u{1b}[0m \u{1b}[31mERROR\u{1b}[0m \
                        \u{1b}[2mmpbond_agent\u{1b}[0m: SIGHUP: bad config";
        assert_eq!(lines_at_level(coloured, "ERROR"), [coloured]);
        assert_eq!(
            without_colour(coloured),
            "2026-12-06T10:45:55.3Z ERROR mpbond_agent: SIGHUP: bad config"
        );
        assert_eq!(lines_at_level(log, "INFO").len(), 1);
        assert!(lines_at_level(log, "ERROR").is_empty());
    }

    #[test]
    fn counts_and_wan_names_come_from_the_status_document() {
        let doc: serde_json::Value = serde_json::from_str(
            r#"{"connections": {"active": 1, "total": 7},
                "wans": [{"name": "wan2"}, {"name": "wan1"}]}"#,
        )
        .expect("json");
        assert_eq!(
            ConnectionCounts::of(&doc),
            Some(ConnectionCounts {
                active: 1,
                total: 7
            })
        );
        assert_eq!(status_wan_names(&doc), ["wan1", "wan2"]);
        assert_eq!(ConnectionCounts::of(&serde_json::json!({})), None);
        assert!(status_wan_names(&serde_json::json!({})).is_empty());
    }
}
