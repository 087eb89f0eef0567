//! Connection limits: total and per client, checked after authentication.
//!
//! [`Admission::try_admit`] counts a connection in, and the returned [`Admitted`] guard
//! counts it out when dropped. The limits are passed at each call, so a reload takes
//! effect for the next connection without touching live ones.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use mpbond_protocol::auth::ClientId;

/// Which limit was hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    Total,
    PerClient,
}

impl LimitHit {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitHit::Total => "max_connections",
            LimitHit::PerClient => "max_connections_per_client",
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_client: HashMap<ClientId, usize>,
}

/// Live admitted connections, in total and per client.
#[derive(Debug, Default)]
pub struct Admission {
    counts: Mutex<Counts>,
}

/// A connection counted in; counted out on drop.
#[derive(Debug)]
pub struct Admitted {
    admission: Arc<Admission>,
    client: ClientId,
}

impl Admission {
    /// Count `client` in unless a limit is reached.
    pub fn try_admit(
        self: &Arc<Self>,
        client: &ClientId,
        max_total: usize,
        max_per_client: usize,
    ) -> Result<Admitted, LimitHit> {
        let mut c = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if c.total >= max_total {
            return Err(LimitHit::Total);
        }
        let n = c.per_client.get(client).copied().unwrap_or(0);
        if n >= max_per_client {
            return Err(LimitHit::PerClient);
        }
        c.total += 1;
        c.per_client.insert(client.clone(), n + 1);
        Ok(Admitted {
            admission: self.clone(),
            client: client.clone(),
        })
    }

    /// Admitted connections now: (total, for `client`).
    pub fn counts(&self, client: &ClientId) -> (usize, usize) {
        let c = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        (c.total, c.per_client.get(client).copied().unwrap_or(0))
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut c = self
            .admission
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_client.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per_client.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_release() {
        let a = Arc::new(Admission::default());
        let home: ClientId = "home".parse().unwrap();
        let work: ClientId = "work".parse().unwrap();
        let g1 = a.try_admit(&home, 3, 2).unwrap();
        let _g2 = a.try_admit(&home, 3, 2).unwrap();
        assert_eq!(a.try_admit(&home, 3, 2).unwrap_err(), LimitHit::PerClient);
        let _g3 = a.try_admit(&work, 3, 2).unwrap();
        assert_eq!(a.try_admit(&work, 3, 2).unwrap_err(), LimitHit::Total);
        drop(g1);
        assert_eq!(a.counts(&home), (2, 1));
        let _g4 = a.try_admit(&home, 3, 2).unwrap();
        assert_eq!(a.counts(&home), (3, 2));
    }
}
