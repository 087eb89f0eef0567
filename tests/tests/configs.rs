//! The configs the test bed writes are accepted by the daemons' `check-config`
//! (no root needed; needs the daemon binaries built), including the agent's
//! control-plane sections (`[[wan]]` in every mode, `[status]`).

use std::process::Command;

use mpbond_tests::daemons::{
    bin_path, AgentConfig, ConcentratorConfig, WanEntry, CLIENT_ID, METRICS_ADDR,
};

fn check(bin: &str, text: &str, ext: &str) {
    let path = std::env::temp_dir().join(format!("mpbt-cfg-{}-{bin}.{ext}", std::process::id()));
    std::fs::write(&path, text).expect("write config");
    let bin = bin_path(bin).unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(&bin)
        .arg("check-config")
        .arg(&path)
        .output()
        .expect("run check-config");
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "{} check-config refused:\n{text}\n{}{}",
        bin.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn rendered_configs_pass_check_config() {
    let key = "ab".repeat(32);
    let conc = ConcentratorConfig {
        listen: vec![
            "0.0.0.0:4850".parse().unwrap(),
            "[::]:4850".parse().unwrap(),
        ],
        metrics: Some(METRICS_ADDR.into()),
        clients: vec![(CLIENT_ID.into(), key.clone())],
        deny: vec!["2001:db8:200::10/128".into()],
        allow: vec!["203.0.113.0/24".into()],
        quiet: Some(false),
        connect_timeout_ms: 5000,
        handshake_timeout_ms: 5000,
        auth_window_secs: 60,
        per_source: None,
        congestion: Some("reno".into()),
    };
    check("mpbond-concentrator", &conc.to_toml(), "toml");
    let agent = AgentConfig {
        host: "192.0.2.1".into(),
        port: 4850,
        client_id: CLIENT_ID.into(),
        key,
        listen_port: 4851,
        lan_interfaces: vec!["br-lan".into()],
        bypass_destinations: vec!["198.51.100.0/24".into()],
        bypass_sources: Vec::new(),
        health_interval_ms: 300,
        health_timeout_ms: 1000,
        down_after: 2,
        up_after: 1,
        wans: vec![
            WanEntry::new("wan1", "on"),
            WanEntry::new("wan2", "backup"),
            WanEntry::new("wan3", "off"),
        ],
        status_socket: std::env::temp_dir().join("mpbt-cfg-agent.sock"),
        state_dir: None,
        down_reaction: Some("keep".into()),
        udp: Some("default = \"bond\"\n[[udp.rule]]\nports = \"443\"\naction = \"block\"\n".into()),
        congestion: Some("bbr".into()),
        buffers: Some("auto".into()),
        path_quality: Some("enabled = true\nrtt_ratio = 8\nrestore_after_secs = 30".into()),
    };
    check("mpbond-agent", &agent.to_toml(), "toml");
}
