//! The concentrators: `[concentrator]` (one) or `[[concentrators]]` (several, each with a
//! name and a priority, for failover). Both become one list, preferred first.
//!
//! Rules, each error naming its field:
//! * at least one concentrator, and not both forms at once;
//! * `name` defaults to the host; names are unique (`concentrators[1].name: "vps" appears
//!   twice`), 1-253 characters of `[A-Za-z0-9._:-]`;
//! * `priority` is 1..=255, lower preferred, default the entry's position (1, 2, ...);
//!   equal priorities keep the file's order;
//! * the same host and port twice is an error (it would be probed twice for nothing).

use mpbond_protocol::auth::Key;

use super::raw::RawConcentrator;
use super::{field, port, range, valid_host, ConcentratorConfig, ConfigError, FieldError};

/// The most concentrators one agent takes (each is probed).
pub const MAX_CONCENTRATORS: usize = 8;

/// Validate the concentrators of either form; preferred (lowest priority) first.
pub fn concentrators(
    single: Option<RawConcentrator>,
    list: Vec<RawConcentrator>,
) -> Result<Vec<ConcentratorConfig>, ConfigError> {
    let (prefix, entries): (&str, Vec<RawConcentrator>) = match (single, list.is_empty()) {
        (Some(_), false) => {
            return Err(field(
                "concentrators",
                FieldError::Invalid(
                    "give either [concentrator] or [[concentrators]], not both".into(),
                ),
            ))
        }
        (Some(one), true) => ("concentrator", vec![one]),
        (None, false) => ("concentrators", list),
        (None, true) => {
            return Err(field(
                "concentrators",
                FieldError::Invalid("no concentrator configured".into()),
            ))
        }
    };
    if entries.len() > MAX_CONCENTRATORS {
        let problem = FieldError::Range {
            value: entries.len() as u64,
            min: 1,
            max: MAX_CONCENTRATORS as u64,
        };
        return Err(field(prefix, problem));
    }
    let single = prefix == "concentrator";
    let mut out: Vec<ConcentratorConfig> = Vec::with_capacity(entries.len());
    for (i, raw) in entries.into_iter().enumerate() {
        let at = if single {
            prefix.to_owned()
        } else {
            format!("{prefix}[{i}]")
        };
        let c = one(&at, raw, i as u64 + 1)?;
        if out.iter().any(|o| o.name == c.name) {
            return Err(field(format!("{at}.name"), FieldError::Duplicate(c.name)));
        }
        if out.iter().any(|o| o.host == c.host && o.port == c.port) {
            let endpoint = format!("{}:{}", c.host, c.port);
            return Err(field(format!("{at}.host"), FieldError::Duplicate(endpoint)));
        }
        out.push(c);
    }
    out.sort_by_key(|c| c.priority);
    Ok(out)
}

fn one(at: &str, c: RawConcentrator, position: u64) -> Result<ConcentratorConfig, ConfigError> {
    let host = c.host.trim();
    // Accept a bracketed IPv6 literal too.
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .to_owned();
    if host.is_empty() {
        return Err(field(format!("{at}.host"), FieldError::Empty));
    }
    if !valid_host(&host) {
        return Err(field(format!("{at}.host"), FieldError::Host(host)));
    }
    let name = c.name.map(|n| n.trim().to_owned()).unwrap_or(host.clone());
    if !valid_name(&name) {
        let problem = FieldError::Invalid(format!(
            "{name:?} is not a valid name (1-253 characters of [A-Za-z0-9._:-])"
        ));
        return Err(field(format!("{at}.name"), problem));
    }
    let priority = range(&format!("{at}.priority"), c.priority, position, 1, 255)? as u8;
    Ok(ConcentratorConfig {
        name,
        priority,
        port: port(&format!("{at}.port"), c.port, mpbond_protocol::DEFAULT_PORT)?,
        client_id: c
            .client_id
            .parse()
            .map_err(|e| field(format!("{at}.client_id"), FieldError::ClientId(e)))?,
        key: Key::from_hex(c.key.trim())
            .map_err(|e| field(format!("{at}.key"), FieldError::Key(e)))?,
        host,
    })
}

/// 1-253 characters of `[A-Za-z0-9._:-]`: every valid host is a valid name.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// The same concentrators, in the same order, at the same places.
pub fn same_endpoints(a: &[ConcentratorConfig], b: &[ConcentratorConfig]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            (&x.name, x.priority, &x.host, x.port) == (&y.name, y.priority, &y.host, y.port)
        })
}

/// The same client ids and keys, in the same order.
pub fn same_credentials(a: &[ConcentratorConfig], b: &[ConcentratorConfig]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.client_id == y.client_id && x.key.to_hex() == y.key.to_hex())
}
