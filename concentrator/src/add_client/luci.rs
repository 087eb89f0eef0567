//! What a router needs to reach this concentrator, printed the way the router takes it:
//! the LuCI field labels (`luci-app/.../view/mpbond/settings.js`) and a `uci` block for
//! `/etc/config/mpbond` (section `globals`: `host`, `port`, `client_id`, `key`).
//!
//! Used by `add-client` and `show-client`, and so by `install.sh`. The host is the
//! `--host` given, or the source address this VPS would use towards the internet (a
//! route lookup: a UDP `connect`, which sends nothing).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use mpbond_protocol::auth::{ClientId, Key};

/// Printed where the host should go when it could not be guessed.
pub const UNKNOWN_HOST: &str = "VPS_PUBLIC_ADDRESS";

/// Any global address: only the route lookup towards it matters, nothing is sent to it.
const ROUTE_PROBES: [SocketAddr; 2] = [
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(1, 1, 1, 1)), 53),
    SocketAddr::new(
        IpAddr::V6(Ipv6Addr::new(0x2606, 0x4700, 0x4700, 0, 0, 0, 0, 0x1111)),
        53,
    ),
];

/// The concentrator as a router's settings name it.
#[derive(Debug, Clone)]
pub struct RouterValues {
    /// An IP address or a host name; `None` if it could not be guessed.
    pub host: Option<String>,
    pub port: u16,
    pub client: ClientId,
    pub key: Key,
}

impl RouterValues {
    /// Lines to print before the values: a missing or private host.
    pub fn warnings(&self) -> Vec<String> {
        match self.host.as_deref().map(str::parse::<IpAddr>) {
            None => vec![format!(
                "warning: cannot tell this VPS's address (no route to the internet?); replace {UNKNOWN_HOST} below, or run again with --host ADDRESS"
            )],
            Some(Ok(ip)) if !is_global(ip) => vec![format!(
                "warning: {ip} is not a public address; if this VPS is behind NAT, give routers its public address (--host ADDRESS)"
            )],
            Some(_) => Vec::new(),
        }
    }
}

impl fmt::Display for RouterValues {
    /// The LuCI fields, then a block to paste into the router's shell.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = self.host.as_deref().unwrap_or(UNKNOWN_HOST);
        let key = self.key.to_hex();
        writeln!(f, "Router settings for client {}:", self.client)?;
        writeln!(f)?;
        writeln!(f, "In LuCI, Services > mpbond > Settings > General:")?;
        writeln!(f, "  Concentrator host  {host}")?;
        writeln!(f, "  Concentrator port  {}", self.port)?;
        writeln!(f, "  Client ID          {}", self.client)?;
        writeln!(f, "  Key                {key}")?;
        writeln!(f)?;
        writeln!(f, "Or paste this on the router:")?;
        writeln!(f, "uci set mpbond.globals=globals")?;
        writeln!(f, "uci set mpbond.globals.enabled='1'")?;
        writeln!(f, "uci set mpbond.globals.host='{host}'")?;
        writeln!(f, "uci set mpbond.globals.port='{}'", self.port)?;
        writeln!(f, "uci set mpbond.globals.client_id='{}'", self.client)?;
        writeln!(f, "uci set mpbond.globals.key='{key}'")?;
        writeln!(f, "uci commit mpbond")
    }
}

/// Whether `host` may be printed into a shell line between single quotes and taken by
/// LuCI's `host` datatype: an IP address, or a DNS name of letters, digits, `-` and `.`.
pub fn valid_host(host: &str) -> bool {
    if host.parse::<IpAddr>().is_ok() {
        return true;
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The source address of this host's route to the internet, IPv4 first.
pub fn guess_host() -> Option<IpAddr> {
    ROUTE_PROBES.iter().find_map(|probe| {
        let any: SocketAddr = match probe {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(any).ok()?;
        socket.connect(probe).ok()?;
        let ip = socket.local_addr().ok()?.ip();
        (!ip.is_unspecified()).then_some(ip)
    })
}

/// Not private, loopback, link-local, CGNAT (100.64/10) or unique-local (fc00::/7).
pub fn is_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || (a == 100 && (b & 0xc0) == 64))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(host: Option<&str>) -> RouterValues {
        RouterValues {
            host: host.map(str::to_owned),
            port: 4850,
            client: "router1".parse().unwrap(),
            key: Key::from_bytes([0xab; 32]),
        }
    }

    #[test]
    fn prints_the_luci_fields_and_a_uci_block() {
        let text = values(Some("192.0.2.1")).to_string();
        let key = "ab".repeat(32);
        assert!(text.contains("  Concentrator host  192.0.2.1\n"), "{text}");
        assert!(text.contains("  Concentrator port  4850\n"), "{text}");
        assert!(text.contains("  Client ID          router1\n"), "{text}");
        assert!(
            text.contains(&format!("  Key                {key}\n")),
            "{text}"
        );
        let uci: Vec<&str> = text.lines().filter(|l| l.starts_with("uci ")).collect();
        assert_eq!(
            uci,
            [
                "uci set mpbond.globals=globals",
                "uci set mpbond.globals.enabled='1'",
                "uci set mpbond.globals.host='192.0.2.1'",
                "uci set mpbond.globals.port='4850'",
                "uci set mpbond.globals.client_id='router1'",
                &format!("uci set mpbond.globals.key='{key}'"),
                "uci commit mpbond",
            ]
        );
        assert!(values(Some("192.0.2.1")).warnings().is_empty());
    }

    #[test]
    fn warns_about_a_missing_or_private_host() {
        let missing = values(None);
        assert!(missing.to_string().contains(UNKNOWN_HOST));
        assert_eq!(missing.warnings().len(), 1);
        assert_eq!(values(Some("10.1.2.3")).warnings().len(), 1);
        assert_eq!(values(Some("100.100.0.1")).warnings().len(), 1);
        assert_eq!(values(Some("fd00::1")).warnings().len(), 1);
        assert!(values(Some("2001:db8::1")).warnings().is_empty());
        assert!(values(Some("vps.example.net")).warnings().is_empty());
    }

    #[test]
    fn hosts_are_addresses_or_dns_names() {
        for ok in ["192.0.2.1", "2001:db8::1", "vps.example.net", "a-b.c"] {
            assert!(valid_host(ok), "{ok}");
        }
        for bad in ["", "a b", "x';reboot;'", "-a.b", "a..b", "a.b-", "é.net"] {
            assert!(!valid_host(bad), "{bad}");
        }
    }
}
