//! Per-client UDP limits: concurrent flows and a datagram rate (a token bucket shared
//! by all of a client's flows). Pure: time is a parameter.
//!
//! [`UdpClients::try_open`] counts a flow in and returns a [`FlowPermit`] that counts it
//! out when dropped. A flow asks its permit for tokens in small batches
//! ([`FlowPermit::take`]), so the shared lock is taken once per batch, not once per
//! datagram. The limits are passed at each call, so a reload applies to the next batch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use mpbond_protocol::auth::ClientId;

/// A token bucket: `rate` tokens a second, at most `burst` saved.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn new(burst: u32, now: Instant) -> Self {
        Self {
            tokens: f64::from(burst),
            last: now,
        }
    }

    /// Take up to `want` tokens; returns how many were taken.
    pub(crate) fn take(&mut self, want: u32, rate: u32, burst: u32, now: Instant) -> u32 {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * f64::from(rate)).min(f64::from(burst));
        let got = self.tokens.floor().min(f64::from(want)).max(0.0);
        self.tokens -= got;
        got as u32
    }
}

/// The rate and flow limits of one client, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientLimits {
    pub max_flows: usize,
    pub rate: u32,
    pub burst: u32,
}

#[derive(Debug)]
struct ClientState {
    flows: usize,
    bucket: TokenBucket,
}

/// Every client's open UDP flows and datagram bucket.
#[derive(Debug, Default)]
pub(crate) struct UdpClients {
    clients: Mutex<HashMap<ClientId, ClientState>>,
}

/// The flow limit was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FlowLimitHit;

/// One open flow, counted in; counted out on drop.
#[derive(Debug)]
pub(crate) struct FlowPermit {
    clients: Arc<UdpClients>,
    client: ClientId,
    /// Tokens taken from the shared bucket and not used yet.
    allowance: u32,
}

/// Tokens a flow takes from its client's bucket at once.
const BATCH: u32 = 32;

impl UdpClients {
    /// Count a new flow of `client` in, unless it has `limits.max_flows` already.
    pub(crate) fn try_open(
        self: &Arc<Self>,
        client: &ClientId,
        limits: ClientLimits,
        now: Instant,
    ) -> Result<FlowPermit, FlowLimitHit> {
        let mut map = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        let state = map.entry(client.clone()).or_insert_with(|| ClientState {
            flows: 0,
            bucket: TokenBucket::new(limits.burst, now),
        });
        if state.flows >= limits.max_flows {
            if state.flows == 0 {
                map.remove(client);
            }
            return Err(FlowLimitHit);
        }
        state.flows += 1;
        Ok(FlowPermit {
            clients: self.clone(),
            client: client.clone(),
            allowance: 0,
        })
    }

    /// Open flows of `client`.
    #[cfg(test)]
    pub(crate) fn flows(&self, client: &ClientId) -> usize {
        let map = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(client).map_or(0, |s| s.flows)
    }
}

impl FlowPermit {
    /// Whether one more datagram may go out now under the client's rate.
    pub(crate) fn take(&mut self, limits: ClientLimits, now: Instant) -> bool {
        if self.allowance == 0 {
            let mut map = self
                .clients
                .clients
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(state) = map.get_mut(&self.client) {
                let want = BATCH.min(limits.burst.max(1));
                self.allowance = state.bucket.take(want, limits.rate, limits.burst, now);
            }
        }
        if self.allowance == 0 {
            return false;
        }
        self.allowance -= 1;
        true
    }
}

impl Drop for FlowPermit {
    fn drop(&mut self) {
        let mut map = self
            .clients
            .clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(state) = map.get_mut(&self.client) {
            state.flows = state.flows.saturating_sub(1);
            if state.flows == 0 {
                map.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const LIMITS: ClientLimits = ClientLimits {
        max_flows: 2,
        rate: 100,
        burst: 50,
    };

    fn id(s: &str) -> ClientId {
        s.parse().unwrap()
    }

    #[test]
    fn bucket_refills_at_the_rate_up_to_the_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(50, t0);
        assert_eq!(b.take(80, 100, 50, t0), 50);
        assert_eq!(b.take(1, 100, 50, t0), 0);
        assert_eq!(b.take(80, 100, 50, t0 + Duration::from_millis(100)), 10);
        assert_eq!(b.take(80, 100, 50, t0 + Duration::from_secs(100)), 50);
        // Time going backwards takes nothing and adds nothing.
        assert_eq!(b.take(5, 100, 50, t0), 0);
    }

    #[test]
    fn flow_limit_is_per_client_and_freed_on_drop() {
        let t0 = Instant::now();
        let clients = Arc::new(UdpClients::default());
        let a1 = clients.try_open(&id("a"), LIMITS, t0).unwrap();
        let _a2 = clients.try_open(&id("a"), LIMITS, t0).unwrap();
        assert_eq!(
            clients.try_open(&id("a"), LIMITS, t0).unwrap_err(),
            FlowLimitHit
        );
        let _b1 = clients.try_open(&id("b"), LIMITS, t0).unwrap();
        drop(a1);
        assert_eq!(clients.flows(&id("a")), 1);
        let _a3 = clients.try_open(&id("a"), LIMITS, t0).unwrap();
        assert_eq!(clients.flows(&id("a")), 2);
    }

    #[test]
    fn a_clients_flows_share_one_rate() {
        let t0 = Instant::now();
        let clients = Arc::new(UdpClients::default());
        let mut f1 = clients.try_open(&id("a"), LIMITS, t0).unwrap();
        let mut f2 = clients.try_open(&id("a"), LIMITS, t0).unwrap();
        let mut other = clients.try_open(&id("b"), LIMITS, t0).unwrap();
        let mut sent = 0;
        for i in 0..200 {
            let f = if i % 2 == 0 { &mut f1 } else { &mut f2 };
            sent += u32::from(f.take(LIMITS, t0));
        }
        assert_eq!(sent, 50, "the burst, shared");
        assert!(other.take(LIMITS, t0), "another client has its own bucket");
        let later = t0 + Duration::from_secs(1);
        let sent: u32 = (0..200).map(|_| u32::from(f1.take(LIMITS, later))).sum();
        assert_eq!(sent, 50, "a second refills up to the burst");
    }
}
