//! The `mpbond-tb` test protocol and the JSON lines its commands print.
//!
//! A client opens a connection and sends one request line:
//! * `GET <bytes> <seed>\n`: the server sends `bytes` bytes of the seed's
//!   stream and closes.
//! * `PUT <bytes> <seed>\n` then the data: the client half-closes when done;
//!   the server answers `OK <sha256>\n` or `BAD <offset> <sha256>\n` and closes.
//! * `XCH <up> <down> <seed>\n`: both at once. The server sends `down` bytes of
//!   the seed's stream and half-closes at once while it still reads the `up`
//!   bytes of stream `seed ^ UP_SALT`; it logs the upload's verdict (a
//!   [`ServeEvent`]) because it can no longer answer on the wire.

use serde::{Deserialize, Serialize};

/// Longest request line accepted, newline included.
pub const MAX_LINE: usize = 128;
/// Mixed into the seed for the upload half of an `XCH` request.
pub const UP_SALT: u64 = 0x5a5a_a5a5_0f0f_f0f0;

/// One request line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Download `bytes` bytes of stream `seed`.
    Get { bytes: u64, seed: u64 },
    /// Upload `bytes` bytes of stream `seed`.
    Put { bytes: u64, seed: u64 },
    /// Upload `up` bytes of `seed ^ UP_SALT` while downloading `down` of `seed`.
    Xch { up: u64, down: u64, seed: u64 },
}

/// A request line that could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("bad request line {line:?}")]
pub struct BadRequest {
    /// The offending line, lossily decoded.
    pub line: String,
}

impl Request {
    /// Parse one line, without its newline.
    pub fn parse(line: &str) -> Result<Self, BadRequest> {
        let bad = || BadRequest {
            line: line.to_owned(),
        };
        let words: Vec<&str> = line.split_ascii_whitespace().collect();
        let num = |i: usize| -> Result<u64, BadRequest> {
            words.get(i).and_then(|w| w.parse().ok()).ok_or_else(bad)
        };
        match (words.first().copied(), words.len()) {
            (Some("GET"), 3) => Ok(Self::Get {
                bytes: num(1)?,
                seed: num(2)?,
            }),
            (Some("PUT"), 3) => Ok(Self::Put {
                bytes: num(1)?,
                seed: num(2)?,
            }),
            (Some("XCH"), 4) => Ok(Self::Xch {
                up: num(1)?,
                down: num(2)?,
                seed: num(3)?,
            }),
            _ => Err(bad()),
        }
    }

    /// The line to send, newline included.
    pub fn to_line(&self) -> String {
        match self {
            Self::Get { bytes, seed } => format!("GET {bytes} {seed}\n"),
            Self::Put { bytes, seed } => format!("PUT {bytes} {seed}\n"),
            Self::Xch { up, down, seed } => format!("XCH {up} {down} {seed}\n"),
        }
    }

    /// Short name for logs: `get`, `put` or `xch`.
    pub fn mode(&self) -> &'static str {
        match self {
            Self::Get { .. } => "get",
            Self::Put { .. } => "put",
            Self::Xch { .. } => "xch",
        }
    }

    /// Bytes the client sends after the line.
    pub fn up_bytes(&self) -> u64 {
        match *self {
            Self::Get { .. } => 0,
            Self::Put { bytes, .. } => bytes,
            Self::Xch { up, .. } => up,
        }
    }

    /// Bytes of data the server sends (the PUT verdict line not counted).
    pub fn down_bytes(&self) -> u64 {
        match *self {
            Self::Get { bytes, .. } => bytes,
            Self::Put { .. } => 0,
            Self::Xch { down, .. } => down,
        }
    }

    /// Seed of the upload stream.
    pub fn up_seed(&self) -> u64 {
        match *self {
            Self::Xch { seed, .. } => seed ^ UP_SALT,
            Self::Get { seed, .. } | Self::Put { seed, .. } => seed,
        }
    }

    /// Seed of the download stream.
    pub fn down_seed(&self) -> u64 {
        match *self {
            Self::Get { seed, .. } | Self::Put { seed, .. } | Self::Xch { seed, .. } => seed,
        }
    }
}

/// What `mpbond-tb fetch` prints: one JSON line.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FetchReport {
    /// `get`, `put` or `xch`.
    pub mode: String,
    /// Data bytes received (download).
    pub bytes_down: u64,
    /// Data bytes sent (upload).
    pub bytes_up: u64,
    /// Seconds from connect() to the end of the transfer.
    pub seconds: f64,
    /// (bytes_down + bytes_up) × 8 / seconds / 1e6.
    pub mbit_per_s: f64,
    /// Everything arrived intact and complete (for XCH: the download half).
    pub ok: bool,
    /// SHA-256 of the data this side generated (upload) or expects.
    pub sha256_expected: Option<String>,
    /// SHA-256 of the data received, or the one the server reported for an upload.
    pub sha256_got: Option<String>,
    /// Stream offset of the first wrong byte received, if any.
    pub first_bad_offset: Option<u64>,
    /// Longest time without progress, in milliseconds.
    pub longest_stall_ms: f64,
    /// Throughput of each sample interval, in Mbit/s.
    pub samples_mbit: Vec<f64>,
    /// Length of each `samples_mbit` interval, in milliseconds.
    pub sample_ms: u64,
    /// Wall-clock time the first sample interval starts (just before the
    /// connect), in milliseconds since the Unix epoch: places other events
    /// (a signal, a link change) on the sample timeline.
    pub started_unix_ms: f64,
    /// Whether the socket was MPTCP at the end (None if the kernel cannot tell).
    pub mptcp: Option<bool>,
    /// The seed used.
    pub seed: u64,
    /// Why the transfer failed, if it did.
    pub error: Option<String>,
}

impl FetchReport {
    /// Whether the data arrived whole and unchanged: no error, a SHA-256 of what came, and
    /// no wrong byte.
    pub fn intact(&self) -> bool {
        self.ok && self.sha256_got.is_some() && self.first_bad_offset.is_none()
    }
}

/// One JSON line logged by `mpbond-tb serve` on stdout.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ServeEvent {
    /// `listening`, `accept`, `done` or `error`.
    pub event: String,
    /// The bound address (listening) or the peer (others).
    pub addr: String,
    /// `get`, `put` or `xch` once the request is known.
    pub mode: Option<String>,
    /// The request's seed.
    pub seed: Option<u64>,
    /// Data bytes read after the request line.
    pub bytes_in: u64,
    /// Data bytes written.
    pub bytes_out: u64,
    /// Upload verdict (PUT and XCH).
    pub ok: Option<bool>,
    /// What went wrong.
    pub error: Option<String>,
}

/// What `mpbond-tb convert` prints: one JSON line.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ConvertReport {
    /// One entry per connection made (two for `--replay`).
    pub attempts: Vec<ConvertAttempt>,
}

/// The concentrator's answer to one Convert message.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ConvertAttempt {
    /// `ok` (bare header), `error` (Error TLV), `closed` (no full reply), or `io`.
    pub reply: String,
    /// The RFC 8803 error code, when `reply == "error"`.
    pub error_code: Option<u8>,
    /// I/O or decoding trouble, if any.
    pub detail: Option<String>,
}

/// What `mpbond-tb swarm` prints once every connection is open (or failed).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SwarmReport {
    /// Connections open end to end.
    pub opened: usize,
    /// Connections that failed.
    pub failed: usize,
    /// Seconds from the first connect to the last one done.
    pub seconds: f64,
    /// opened / seconds.
    pub per_second: f64,
    /// The first failure, if any.
    pub first_error: Option<String>,
}

/// What `mpbond-tb ttfb` prints.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TtfbReport {
    /// Requests answered completely.
    pub ok: usize,
    /// Requests that failed.
    pub failed: usize,
    /// Time to first byte of each good request, in milliseconds, in order.
    pub ttfb_ms: Vec<f64>,
    /// Their median.
    pub median_ms: f64,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// Paced mode (`--every-ms`): every request in the order started.
    pub paced: Vec<PacedRequest>,
}

/// One request of `mpbond-tb ttfb --every-ms`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct PacedRequest {
    /// When it started, in milliseconds after the first one.
    pub start_ms: f64,
    /// From connect() to the last byte of the answer; `None`: it failed.
    pub done_ms: Option<f64>,
    /// Why it failed.
    pub error: Option<String>,
}

impl TtfbReport {
    /// The paced requests' completion times, sorted (failed ones left out).
    pub fn done_sorted(&self) -> Vec<f64> {
        let mut done: Vec<f64> = self.paced.iter().filter_map(|p| p.done_ms).collect();
        done.sort_by(f64::total_cmp);
        done
    }

    /// The `q` quantile (0..=1) of the paced completion times; NaN when none completed.
    pub fn done_quantile(&self, q: f64) -> f64 {
        let done = self.done_sorted();
        if done.is_empty() {
            return f64::NAN;
        }
        let at = ((done.len() as f64 - 1.0) * q.clamp(0.0, 1.0)).round() as usize;
        done[at]
    }

    /// Milliseconds after `from_ms` (a start offset) until the first paced request that
    /// started at or after it and from which on every request completed within
    /// `fast_ms`; `None` if that never happened.
    pub fn fast_again_after(&self, from_ms: f64, fast_ms: f64) -> Option<f64> {
        let fast = |p: &PacedRequest| p.done_ms.is_some_and(|d| d <= fast_ms);
        let later: Vec<&PacedRequest> = self
            .paced
            .iter()
            .filter(|p| p.start_ms >= from_ms)
            .collect();
        let first_of_tail = (0..later.len()).find(|&i| later[i..].iter().all(|p| fast(p)))?;
        Some(later[first_of_tail].start_ms - from_ms)
    }
}

/// What `mpbond-tb load` prints (the bench reads it back).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadReport {
    /// Connections asked for.
    pub conns: usize,
    /// Connections that were established.
    pub connected: usize,
    /// Connections that failed before the end of the interval.
    pub failed: usize,
    /// Length of the measured interval.
    pub seconds: f64,
    /// Bytes received in the interval, all connections.
    pub bytes: u64,
    /// Aggregate goodput over the interval.
    pub mbit_per_s: f64,
    /// Bytes received from the first connect to the end (for CPU per byte).
    pub total_bytes: u64,
    /// Seconds from the first connect to the end.
    pub total_seconds: f64,
    /// The first error seen, if any.
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paced_quantiles_and_the_time_until_requests_are_fast_again() {
        let req = |start_ms: f64, done_ms: Option<f64>| PacedRequest {
            start_ms,
            done_ms,
            error: None,
        };
        let r = TtfbReport {
            paced: vec![
                req(0.0, Some(2.0)),
                req(250.0, None),
                req(500.0, Some(900.0)),
                req(750.0, Some(3.0)),
                req(1000.0, Some(40.0)),
                req(1250.0, Some(2.0)),
            ],
            ..TtfbReport::default()
        };
        assert_eq!(r.done_sorted(), vec![2.0, 2.0, 3.0, 40.0, 900.0]);
        assert_eq!(r.done_quantile(1.0), 900.0);
        assert_eq!(r.done_quantile(0.0), 2.0);
        assert_eq!(r.fast_again_after(200.0, 50.0), Some(550.0));
        assert_eq!(r.fast_again_after(200.0, 10.0), Some(1050.0));
        assert_eq!(r.fast_again_after(200.0, 1.0), None);
        assert!(TtfbReport::default().done_quantile(0.5).is_nan());
    }

    #[test]
    fn request_lines_round_trip() {
        for r in [
            Request::Get { bytes: 0, seed: 1 },
            Request::Put {
                bytes: 77,
                seed: u64::MAX,
            },
            Request::Xch {
                up: 1,
                down: 2,
                seed: 3,
            },
        ] {
            let line = r.to_line();
            assert!(line.len() <= MAX_LINE);
            assert_eq!(Request::parse(line.trim_end()).ok(), Some(r));
        }
    }

    #[test]
    fn bad_lines_are_refused() {
        for line in [
            "",
            "GET",
            "GET 1",
            "GET x 1",
            "PUT 1 2 3",
            "XCH 1 2",
            "FOO 1 2",
        ] {
            assert!(Request::parse(line).is_err(), "{line:?}");
        }
    }
}
