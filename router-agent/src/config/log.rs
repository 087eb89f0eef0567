//! Validation of `[log]`: the agent's log filter (`log.level`, UCI `globals.log_level`).
//!
//! The value is a `tracing_subscriber::filter::Targets` spec: a level (`info`), or
//! `TARGET=LEVEL` directives with an optional bare default level, comma-separated
//! (`mpbond_agent::control=debug,info`). Every level must be one of `off`, `error`,
//! `warn`, `info`, `debug` or `trace`: `Targets` alone would take a misspelt level for a
//! target name and silently log nothing else. The config keeps the checked text; `main`
//! builds the filter from it at start and on every reload (`RUST_LOG`, when set, wins).

use std::str::FromStr;

use tracing_subscriber::filter::{LevelFilter, Targets};

use super::raw::RawLog;
use super::{field, ConfigError, FieldError};

/// The level when none is configured.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// The field name in errors.
const FIELD: &str = "log.level";

/// The checked filter text (trimmed), or the default.
pub fn level(raw: RawLog) -> Result<String, ConfigError> {
    let Some(text) = raw.level else {
        return Ok(DEFAULT_LOG_LEVEL.to_owned());
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(field(FIELD, FieldError::Empty));
    }
    let bad = || field(FIELD, FieldError::LogFilter(text.to_owned()));
    for directive in text.split(',') {
        let level = match directive.split_once('=') {
            Some((target, level)) if !target.trim().is_empty() => level,
            Some(_) => return Err(bad()),
            None => directive,
        };
        // `LevelFilter` takes an empty text for `error`: a stray comma is a mistake.
        let level = level.trim();
        if level.is_empty() {
            return Err(bad());
        }
        LevelFilter::from_str(level).map_err(|_| bad())?;
    }
    Targets::from_str(text).map_err(|_| bad())?;
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<String, String> {
        level(RawLog {
            level: Some(text.to_owned()),
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn levels_and_target_directives_are_accepted() {
        for ok in [
            "info",
            "debug",
            "off",
            "TRACE",
            "mpbond_agent::control=debug,info",
            "mpbond_agent=trace, warn",
        ] {
            assert_eq!(check(ok).as_deref(), Ok(ok.trim()), "{ok}");
        }
        assert_eq!(level(RawLog::default()).unwrap(), "info");
    }

    #[test]
    fn a_misspelt_level_or_an_empty_filter_names_the_option() {
        for bad in [
            "debgu",
            "verbose",
            "mpbond_agent=loud",
            "=debug",
            "info,,debug",
        ] {
            let e = check(bad).unwrap_err();
            assert!(e.starts_with("log.level: "), "{e}");
            assert!(e.contains(bad), "{e}");
        }
        assert_eq!(check("  ").unwrap_err(), "log.level: must not be empty");
    }
}
