//! Validation of bypass by name: `[bypass] domains` and the dnsmasq integration.
//!
//! ```toml
//! [bypass]
//! domains = ["bank.example", "video.example"]   # and every name under them
//! dnsmasq_conf = "/tmp/dnsmasq.d/mpbond-bypass.conf"   # where the agent writes nftset=
//! dnsmasq_restart = ["/etc/init.d/dnsmasq", "restart"] # run after it changed
//! ```
//!
//! A domain is kept in lower case without a leading `*.` or a trailing dot; it must be
//! 1-253 characters of labels of `[a-z0-9_-]` (so nothing can break out of dnsmasq's
//! `/name/` syntax). Without `dnsmasq_conf` the names are kept in the table's sets only
//! if some other resolver fills them; the agent says so in its log and status.

use std::path::PathBuf;

use super::{field, ConfigError, FieldError};

/// The checked domains and resolver integration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameBypass {
    /// Lower case, no trailing dot, no duplicates, in the config's order.
    pub domains: Vec<String>,
    /// The dnsmasq config file the agent writes (`None`: no resolver integration).
    pub dnsmasq_conf: Option<PathBuf>,
    /// The command run after that file changed or was removed (empty: none).
    pub dnsmasq_restart: Vec<String>,
}

/// The file bypass by name writes in dnsmasq's conf-dir when the config names none.
pub const CONFDIR_FILE: &str = "mpbond-bypass.conf";

impl NameBypass {
    /// With no `dnsmasq_conf` configured, write [`CONFDIR_FILE`] in `confdir` (the
    /// command line's `--dnsmasq-confdir`: on OpenWrt the init script passes the first
    /// dnsmasq instance's conf-dir, `/tmp/dnsmasq.<section>.d` unless UCI sets one).
    pub fn in_confdir(&mut self, confdir: &std::path::Path) {
        if self.dnsmasq_conf.is_none() {
            self.dnsmasq_conf = Some(confdir.join(CONFDIR_FILE));
        }
    }
}

/// Check `domains`, `dnsmasq_conf` and `dnsmasq_restart` of `[bypass]`.
pub(super) fn name_bypass(
    domains: &[String],
    dnsmasq_conf: Option<String>,
    dnsmasq_restart: Vec<String>,
) -> Result<NameBypass, ConfigError> {
    let mut out: Vec<String> = Vec::new();
    for (i, raw) in domains.iter().enumerate() {
        let name = format!("bypass.domains[{i}]");
        let domain = domain(raw).map_err(|why| field(&name, FieldError::Invalid(why)))?;
        if out.contains(&domain) {
            return Err(field(name, FieldError::Duplicate(domain)));
        }
        out.push(domain);
    }
    let dnsmasq_conf = match dnsmasq_conf {
        None => None,
        Some(p) if p.is_empty() => None,
        Some(p) if p.starts_with('/') && !p.ends_with('/') => Some(PathBuf::from(p)),
        Some(p) => {
            let why = format!("{p:?} is not an absolute file path");
            return Err(field("bypass.dnsmasq_conf", FieldError::Invalid(why)));
        }
    };
    if dnsmasq_restart.first().is_some_and(|c| !c.starts_with('/')) {
        let why = "the command must be an absolute path".to_owned();
        return Err(field("bypass.dnsmasq_restart", FieldError::Invalid(why)));
    }
    Ok(NameBypass {
        domains: out,
        dnsmasq_conf,
        dnsmasq_restart,
    })
}

/// One domain, normalised, or why it is not one.
fn domain(raw: &str) -> Result<String, String> {
    let text = raw.trim().to_ascii_lowercase();
    let text = text.strip_prefix("*.").unwrap_or(&text);
    let text = text.strip_suffix('.').unwrap_or(text);
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if text.is_empty() || text.len() > 253 || !text.split('.').all(label_ok) {
        return Err(format!(
            "{raw:?} is not a domain name (labels of a-z, 0-9, - and _, dot-separated)"
        ));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(domains: &[&str]) -> Result<NameBypass, ConfigError> {
        let d: Vec<String> = domains.iter().map(|s| s.to_string()).collect();
        name_bypass(&d, None, Vec::new())
    }

    #[test]
    fn the_confdir_from_the_command_line_names_the_file_unless_the_config_does() {
        let dir = std::path::Path::new("/tmp/dnsmasq.cfg01411c.d");
        let mut unset = check(&["bank.example"]).expect("valid");
        unset.in_confdir(dir);
        assert_eq!(
            unset.dnsmasq_conf,
            Some(PathBuf::from("/tmp/dnsmasq.cfg01411c.d/mpbond-bypass.conf"))
        );
        let d = vec!["bank.example".to_owned()];
        let mut set = name_bypass(&d, Some("/etc/dnsmasq.d/x.conf".into()), Vec::new()).unwrap();
        set.in_confdir(dir);
        assert_eq!(
            set.dnsmasq_conf,
            Some(PathBuf::from("/etc/dnsmasq.d/x.conf"))
        );
    }

    #[test]
    fn domains_are_normalised() {
        let ok = check(&["Bank.Example.", "*.video.example", "a_b.test"]).expect("valid");
        assert_eq!(ok.domains, ["bank.example", "video.example", "a_b.test"]);
    }

    #[test]
    fn what_could_break_dnsmasq_syntax_is_refused() {
        for bad in [
            "", "a/b", "a#b", "a b", "x..y", "-x.test", "ex ample", "a,b", "é.test",
        ] {
            let err = check(&[bad]).expect_err(bad).to_string();
            assert!(err.starts_with("bypass.domains[0]:"), "{err}");
        }
        let err = check(&["a.test", "A.test."]).expect_err("dup").to_string();
        assert!(err.contains("appears twice"), "{err}");
    }

    #[test]
    fn the_conf_path_is_absolute_and_the_command_too() {
        let d = vec!["a.test".to_owned()];
        assert!(name_bypass(&d, Some("tmp/x.conf".into()), Vec::new()).is_err());
        assert!(name_bypass(&d, Some("/tmp/".into()), Vec::new()).is_err());
        let cmd = vec!["dnsmasq-reload".to_owned()];
        assert!(name_bypass(&d, None, cmd).is_err());
        let ok = name_bypass(&d, Some(String::new()), Vec::new()).expect("empty: off");
        assert_eq!(ok.dnsmasq_conf, None);
    }
}
