//! The UDP flows' decisions, sans-IO with time passed in: whether a new flow goes
//! through the concentrator or out directly, what a refusal teaches, and how long an
//! idle flow lives.
//!
//! * A concentrator that answers a UDP request with Unsupported Message (code 2: it does
//!   not know the UDP TLV) has no UDP relay: every new flow goes direct for
//!   [`NO_UDP_MEMORY`], then the next flow asks again.
//! * A destination the concentrator refuses by policy (any other refusal code) goes
//!   direct for [`REFUSED_MEMORY`], so its datagrams do not ask again one by one.
//! * Idle timeouts match the concentrator's: `[udp] idle_timeout_secs` (120 s), and
//!   [`DNS_IDLE`] for port 53, whose flows are one question and one answer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mpbond_protocol::ErrorCode;

/// How long "this concentrator has no UDP relay" is remembered.
pub const NO_UDP_MEMORY: Duration = Duration::from_secs(600);
/// How long a refused destination goes direct.
pub const REFUSED_MEMORY: Duration = Duration::from_secs(60);
/// The idle timeout of DNS flows (port 53), as the concentrator's.
pub const DNS_IDLE: Duration = Duration::from_secs(30);
/// Most refused destinations remembered; past it the oldest are forgotten first.
const MAX_REFUSED: usize = 4096;

/// Where a new flow's datagrams go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Through the concentrator: one MPTCP connection for the flow.
    Bond,
    /// From the router itself, by its NAT.
    Direct,
}

/// What the agent remembers about refusals.
#[derive(Debug)]
pub struct FlowBook {
    idle: Duration,
    no_udp_until: Option<Instant>,
    /// A leg of a protected flow was refused as Unsupported Message until then.
    no_groups_until: Option<Instant>,
    refused: HashMap<SocketAddr, Instant>,
}

impl FlowBook {
    /// A book with the configured idle timeout.
    pub fn new(idle: Duration) -> FlowBook {
        FlowBook {
            idle,
            no_udp_until: None,
            no_groups_until: None,
            refused: HashMap::new(),
        }
    }

    /// The route of a new flow to `dst` at `now`.
    pub fn route(&mut self, dst: SocketAddr, now: Instant) -> Route {
        if self.no_udp_until.is_some_and(|until| now < until) {
            return Route::Direct;
        }
        match self.refused.get(&dst) {
            Some(&until) if now < until => Route::Direct,
            Some(_) => {
                self.refused.remove(&dst);
                Route::Bond
            }
            None => Route::Bond,
        }
    }

    /// The concentrator refused a flow to `dst` with `code` at `now`.
    pub fn refused(&mut self, dst: SocketAddr, code: ErrorCode, now: Instant) {
        if code == ErrorCode::UnsupportedMessage {
            self.no_udp_until = Some(now + NO_UDP_MEMORY);
            return;
        }
        if self.refused.len() >= MAX_REFUSED {
            self.refused.retain(|_, until| *until > now);
            if self.refused.len() >= MAX_REFUSED {
                if let Some(oldest) = self
                    .refused
                    .iter()
                    .min_by_key(|(_, u)| **u)
                    .map(|(d, _)| *d)
                {
                    self.refused.remove(&oldest);
                }
            }
        }
        self.refused.insert(dst, now + REFUSED_MEMORY);
    }

    /// A protected flow's leg was refused as Unsupported Message at `now`: the
    /// concentrator does not know the Group TLV, so flows classed `protect` are bonded
    /// for [`NO_UDP_MEMORY`], then the next one asks again.
    pub fn groups_refused(&mut self, now: Instant) {
        self.no_groups_until = Some(now + NO_UDP_MEMORY);
    }

    /// Whether a flow classed `protect` starting at `now` gets its legs.
    pub fn protects(&self, now: Instant) -> bool {
        !self.no_groups_until.is_some_and(|until| now < until)
    }

    /// Whether the concentrator is known to have no UDP relay at `now`.
    pub fn concentrator_lacks_udp(&self, now: Instant) -> bool {
        self.no_udp_until.is_some_and(|until| now < until)
    }

    /// How long a flow to `dst` may stay without a datagram either way.
    pub fn idle_timeout(&self, dst: SocketAddr) -> Duration {
        if dst.port() == 53 {
            DNS_IDLE.min(self.idle)
        } else {
            self.idle
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    #[test]
    fn unsupported_message_sends_every_flow_direct_for_a_while() {
        let t0 = Instant::now();
        let mut book = FlowBook::new(Duration::from_secs(120));
        let a = addr("203.0.113.1:443");
        assert_eq!(book.route(a, t0), Route::Bond);
        book.refused(a, ErrorCode::UnsupportedMessage, t0);
        assert_eq!(book.route(addr("198.51.100.2:3478"), t0), Route::Direct);
        assert!(book.concentrator_lacks_udp(t0 + NO_UDP_MEMORY - Duration::from_secs(1)));
        assert_eq!(book.route(a, t0 + NO_UDP_MEMORY), Route::Bond);
    }

    #[test]
    fn a_policy_refusal_sends_only_that_destination_direct() {
        let t0 = Instant::now();
        let mut book = FlowBook::new(Duration::from_secs(120));
        let a = addr("192.0.2.7:9");
        book.refused(a, ErrorCode::NotAuthorized, t0);
        assert_eq!(book.route(a, t0 + Duration::from_secs(1)), Route::Direct);
        assert_eq!(book.route(addr("192.0.2.8:9"), t0), Route::Bond);
        assert_eq!(book.route(a, t0 + REFUSED_MEMORY), Route::Bond);
        assert!(!book.concentrator_lacks_udp(t0));
    }

    #[test]
    fn a_concentrator_without_groups_bonds_protected_flows_for_a_while() {
        let t0 = Instant::now();
        let mut book = FlowBook::new(Duration::from_secs(120));
        assert!(book.protects(t0));
        book.groups_refused(t0);
        assert!(!book.protects(t0 + NO_UDP_MEMORY - Duration::from_secs(1)));
        assert_eq!(book.route(addr("198.51.100.2:3478"), t0), Route::Bond);
        assert!(book.protects(t0 + NO_UDP_MEMORY));
    }

    #[test]
    fn dns_flows_idle_out_sooner() {
        let book = FlowBook::new(Duration::from_secs(120));
        assert_eq!(book.idle_timeout(addr("9.9.9.9:53")), DNS_IDLE);
        assert_eq!(
            book.idle_timeout(addr("9.9.9.9:443")),
            Duration::from_secs(120)
        );
        let short = FlowBook::new(Duration::from_secs(10));
        assert_eq!(
            short.idle_timeout(addr("9.9.9.9:53")),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn the_refused_memory_is_bounded() {
        let t0 = Instant::now();
        let mut book = FlowBook::new(Duration::from_secs(120));
        for i in 0..(MAX_REFUSED as u32 + 10) {
            let dst = SocketAddr::new(std::net::Ipv4Addr::from(0x0a00_0000 + i).into(), 1);
            book.refused(
                dst,
                ErrorCode::NotAuthorized,
                t0 + Duration::from_millis(u64::from(i)),
            );
        }
        assert!(book.refused.len() <= MAX_REFUSED);
    }
}
