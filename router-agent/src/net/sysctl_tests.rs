//! Unit tests for the sysctl writers, on a fake `/proc/sys` in a temporary directory.

use std::fs;

use super::*;
use crate::model::netops::Limits;

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("mpbh-sysctl-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("net/mptcp")).expect("scratch dir");
        Scratch(dir)
    }

    fn file(&self, rel: &str, content: &str) {
        let path = self.0.join(rel);
        fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
        fs::write(path, content).expect("write");
    }

    fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.0.join(rel))
            .expect("read")
            .trim()
            .to_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn cfg() -> MptcpConfig {
    MptcpConfig {
        limits: Limits {
            subflows: 8,
            add_addr_accepted: 0,
        },
        blackhole_timeout: Some(0),
        syn_retrans_before_tcp_fallback: Some(2),
        stale_loss_cnt: Some(2),
        down_reaction: Default::default(),
        congestion: None,
        buffers: Default::default(),
    }
}

#[test]
fn rp_filter_is_written_loose() {
    let s = Scratch::new("rp");
    s.file("net/ipv4/conf/wan1/rp_filter", "1\n");
    set_rp_filter_loose_at(&s.0, "wan1").expect("writes");
    assert_eq!(s.read("net/ipv4/conf/wan1/rp_filter"), "2");
    assert!(set_rp_filter_loose_at(&s.0, "nosuch").is_err());
    assert!(set_rp_filter_loose_at(&s.0, "../x").is_err());
}

#[test]
fn cpe_sysctls_on_an_old_kernel_report_the_missing_ones() {
    let s = Scratch::new("cpe");
    s.file("net/mptcp/enabled", "0\n");
    s.file("net/mptcp/blackhole_timeout", "3600\n");
    let report = apply_cpe_at(&s.0, &cfg());
    assert!(report.all_set());
    assert_eq!(
        report.missing(),
        [
            "net.mptcp.syn_retrans_before_tcp_fallback",
            "net.mptcp.stale_loss_cnt"
        ]
    );
    assert_eq!(s.read("net/mptcp/enabled"), "1");
    assert_eq!(s.read("net/mptcp/blackhole_timeout"), "0");
    assert!(
        !s.0.join("net/mptcp/stale_loss_cnt").exists(),
        "never created"
    );
    assert_eq!(
        report.results[0].to_string(),
        "net.mptcp.enabled = 1 (was 0)"
    );
}

#[test]
fn unconfigured_knobs_are_left_alone() {
    let s = Scratch::new("none");
    s.file("net/mptcp/enabled", "1\n");
    s.file("net/mptcp/stale_loss_cnt", "4\n");
    let mut c = cfg();
    c.stale_loss_cnt = None;
    let report = apply_cpe_at(&s.0, &c);
    assert_eq!(s.read("net/mptcp/stale_loss_cnt"), "4");
    assert!(report
        .results
        .iter()
        .all(|r| r.key != "net.mptcp.stale_loss_cnt"));
}

#[test]
fn buffer_limits_are_the_third_fields_of_tcp_rmem_and_wmem() {
    let s = Scratch::new("bufmax");
    s.file("net/ipv4/tcp_rmem", "4096\t131072\t6291456\n");
    assert_eq!(
        buffer_limits_at(&s.0),
        crate::core::KernelBufferLimits {
            rmem_max: Some(6_291_456),
            wmem_max: None,
        },
        "a missing tcp_wmem is unknown"
    );
}
