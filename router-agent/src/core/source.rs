//! Where new upstream connections start. Binding matters because an MPTCP connection
//! only adds subflows once its initial subflow is established: an initial SYN sent down
//! a dead main route would stall every new connection.

use std::net::{IpAddr, SocketAddr};

use crate::model::wan::{Health, Mode, Wan};

/// Where new upstream connections should start: an address, of the concentrator's
/// family, of the first WAN (in plan order) whose probes say it is up (or degraded),
/// `on` WANs before `backup` ones, never a metered WAN held back (`standby`). None when no
/// WAN qualifies: the main route decides.
pub fn preferred_source(wans: &[Wan], concentrator: SocketAddr) -> Option<IpAddr> {
    let live = |mode: Mode| {
        wans.iter()
            .filter(move |w| w.mode == mode && w.link_up && !w.standby)
            .filter(|w| matches!(w.health, Health::Up | Health::Degraded))
            .find_map(|w| {
                w.addresses
                    .iter()
                    .map(|a| a.addr())
                    .find(|a| a.is_ipv4() == concentrator.is_ipv4())
            })
    };
    live(Mode::On).or_else(|| live(Mode::Backup))
}
