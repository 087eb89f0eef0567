//! From the control-plane model (`crate::model::wan`, `crate::model::wan_health`) and the
//! kernel feature probe (`crate::net::features`) to the status model: the only place the
//! status code depends on those types.

use std::net::IpAddr;

use super::state::{KernelStatus, StatusModel, WanInfo, WanMode, WanState};
use crate::model::wan::{Health, Mode, Wan};
use crate::model::wan_health::ProbeState;
use crate::net::features::KernelFeatures;

impl From<&KernelFeatures> for KernelStatus {
    fn from(k: &KernelFeatures) -> Self {
        KernelStatus {
            release: k.release.clone(),
            mptcp: k.mptcp,
            tfo_mptcp: k.tfo_mptcp,
            tcp_is_mptcp: k.tcp_is_mptcp,
            mptcp_full_info: k.mptcp_full_info,
            missing: k.missing(),
        }
    }
}

impl From<Mode> for WanMode {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::On => WanMode::On,
            Mode::Backup => WanMode::Backup,
            Mode::Off => WanMode::Off,
        }
    }
}

impl From<Health> for WanState {
    fn from(health: Health) -> Self {
        match health {
            Health::Up => WanState::Up,
            Health::Degraded => WanState::Degraded,
            Health::Down => WanState::Down,
            Health::Unknown => WanState::Unknown,
        }
    }
}

impl WanInfo {
    /// The status view of `wan`, with the table and endpoint id the plan gave it. The
    /// gateway is the IPv4 one if there is one, else the IPv6 one.
    pub fn from_wan(wan: &Wan, table: Option<u32>, endpoint_id: Option<u8>) -> WanInfo {
        WanInfo {
            name: wan.name.clone(),
            device: wan.device.clone(),
            addresses: wan.addresses.iter().map(|net| net.addr()).collect(),
            gateway: wan
                .gateway4
                .map(IpAddr::V4)
                .or(wan.gateway6.map(IpAddr::V6)),
            table,
            endpoint_id,
            mode: wan.mode.into(),
            state: wan.health.into(),
        }
    }
}

impl StatusModel {
    /// Copy a WAN's probe figures from its state machine: state, median RTT, and loss
    /// in percent (null until a probe has been sent). False if there is no such WAN.
    pub fn set_probe_state(&mut self, name: &str, probe: &ProbeState) -> bool {
        let loss = (probe.sent() > 0).then(|| (probe.loss() * 1000.0).round() / 10.0);
        self.set_wan_state(name, probe.health().into())
            && self.set_probe_stats(name, probe.rtt(), loss)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::model::wan_health::ProbeSettings;

    fn wan() -> Wan {
        Wan {
            name: "wan".into(),
            device: "eth1".into(),
            ifindex: 3,
            addresses: vec!["100.64.12.7/24".parse().unwrap()],
            gateway4: None,
            gateway6: Some("fe80::1".parse().unwrap()),
            point_to_point: false,
            mode: Mode::Backup,
            health: Health::Degraded,
            link_up: true,
            ra_routes: vec![],
            dev_default4: false,
            dev_default6: false,
            metered: false,
            standby: false,
        }
    }

    #[test]
    fn wan_and_probe_state() {
        let info = WanInfo::from_wan(&wan(), Some(2001), None);
        assert_eq!(
            info.addresses,
            vec!["100.64.12.7".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(info.gateway, Some("fe80::1".parse().unwrap()));
        assert_eq!(
            (info.mode, info.state),
            (WanMode::Backup, WanState::Degraded)
        );

        let now = Instant::now();
        let mut model = StatusModel::new("0.1.0", now, "vps");
        model.set_wans(vec![info]);
        let mut probe = ProbeState::new(ProbeSettings::default());
        assert!(model.set_probe_state("wan", &probe));
        let doc = model.render(now);
        assert_eq!((doc.wans[0].rtt_ms, doc.wans[0].loss_pct), (None, None));
        assert_eq!(doc.wans[0].state, WanState::Unknown);
        probe.record(Some(Duration::from_millis(20)), now);
        probe.record(None, now);
        assert!(model.set_probe_state("wan", &probe));
        let doc = model.render(now);
        assert_eq!(
            (doc.wans[0].rtt_ms, doc.wans[0].loss_pct),
            (Some(20.0), Some(50.0))
        );
        assert!(!model.set_probe_state("gone", &probe));
    }

    #[test]
    fn kernel_features() {
        let features = KernelFeatures {
            mptcp: true,
            tfo_mptcp: false,
            tcp_is_mptcp: true,
            mptcp_full_info: false,
            tfo_client_sysctl: true,
            release: "6.1.0".into(),
        };
        let k = KernelStatus::from(&features);
        assert_eq!(k.release, "6.1.0");
        assert!(k.mptcp && !k.tfo_mptcp && k.tcp_is_mptcp && !k.mptcp_full_info);
        assert_eq!(k.missing, features.missing());
        assert!(!k.missing.is_empty());
    }
}
