//! The agent's nftables table, spoken over nf_tables netlink directly. An owner table
//! lives exactly as long as the netlink socket that created it, so the agent must hold
//! that socket itself: running `nft` cannot do it (and OpenWrt builds nftables without
//! the interactive CLI).
//!
//! ```text
//! table inet mpbond {
//!     flags owner                       # dies with the agent's netlink socket: fail open
//!     chain prerouting {                # nat, prerouting, dstnat - 10: just before fw4
//!         iifname "br-lan" meta l4proto tcp ct state related,new jump redirect_lan
//!     }
//!     chain redirect_lan {
//!         ip daddr 10.0.0.0/8 return    # bypasses (destinations, then sources)
//!         meta l4proto tcp redirect to :4851   # only while the concentrator answers
//!     }
//!     chain udp_prerouting { ... }      # filter, prerouting, mangle - 10: LAN UDP (udp_rules.rs)
//!     chain udp_lan { ... tproxy to :4852 meta mark set 0x00004d42 accept }
//! }
//! ```
//!
//! Layout:
//! * `rules.rs` (pure): spec → rules, each with its expressions and its nft text;
//! * `udp_rules.rs` (pure): the UDP chains' rules (tproxy, exclusions, `[udp]` rules);
//! * `name_sets.rs` (pure): bypass by name, the companion table `<table>_names` whose
//!   address sets dnsmasq fills, and the mark bit that carries a match to our chains;
//! * `render.rs` (pure): [`render`], the table in nft syntax, golden-file tested
//!   (`testdata/*.nft`);
//! * `set_count.rs`: how many addresses the name sets hold (a dump, for the status);
//! * `expr.rs`: expressions → netlink attributes;
//! * `batch.rs`: spec → the nf_tables transactions for create, apply and remove;
//! * `wire.rs`: netlink attributes, batch framing, reply parsing (bytes only);
//! * `netlink.rs`: the `NETLINK_NETFILTER` socket: send a batch, check every ACK;
//! * `tests/`: the golden test and the namespace tests (root only).
//!
//! [`NftTable`] keeps its socket open for its whole life. The table has
//! `NFT_TABLE_F_OWNER`, so the kernel deletes it when that socket closes, including when
//! the process is killed. No other process can change an owner table.

mod batch;
mod expr;
pub mod name_sets;
mod netlink;
mod render;
mod rules;
mod set_count;
#[cfg(test)]
mod tests;
mod udp_rules;
mod wire;

use std::io;

pub use render::render;
pub use set_count::count_name_sets;

pub use crate::model::plan::RedirectSpec;

/// Why an nf_tables operation failed. When nf_tables refused a batch, none of it applied.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// The spec cannot be put in a table (bad table or interface name, port 0).
    #[error("invalid nft redirect spec: {reason}")]
    InvalidSpec { reason: String },
    /// A socket call failed (`what` says which).
    #[error("{what} failed")]
    Socket {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// nf_tables refused `message`, e.g. `NEWRULE rule inet mpbond redirect_lan `...``.
    #[error("nf_tables rejected {message}{}", detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Rejected {
        message: String,
        /// The kernel's extended-ACK text, if any.
        detail: Option<String>,
        #[source]
        source: io::Error,
    },
    /// `EPERM`/`EBUSY` on our table: another socket owns it.
    #[error("table inet {table} owned by another process (is another mpbond-agent running?); {message} failed")]
    Owned {
        table: String,
        message: String,
        #[source]
        source: io::Error,
    },
    /// The kernel did not answer `message` in time.
    #[error("no reply from nf_tables to {message}")]
    NoAck { message: String },
    /// A reply could not be parsed.
    #[error("malformed netlink reply: {0}")]
    Malformed(&'static str),
}

impl NftError {
    /// The errno behind the error, if there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NftError::Socket { source, .. }
            | NftError::Rejected { source, .. }
            | NftError::Owned { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// EPERM/EBUSY on one of our messages means the table belongs to another socket.
    fn owned_by_other(self, table: &str) -> NftError {
        match self {
            NftError::Rejected {
                message, source, ..
            } if message != wire::WHOLE_BATCH
                && matches!(source.raw_os_error(), Some(libc::EPERM | libc::EBUSY)) =>
            {
                NftError::Owned {
                    table: table.to_owned(),
                    message,
                    source,
                }
            }
            other => other,
        }
    }
}

/// The live table. It exists in the kernel exactly as long as this value (and its socket).
#[derive(Debug)]
pub struct NftTable {
    socket: netlink::Socket,
    table: String,
    /// nf_tables refused the UDP interception (no tproxy in the kernel): the table is
    /// kept without it, so TCP is still redirected and UDP leaves by NAT.
    without_udp: bool,
}

impl NftTable {
    /// Open the socket, delete a stale table of that name left by a non-owner (an `nft`
    /// run, an old agent), then add the owner table with its chains and rules in one batch.
    /// Opens the socket in the calling thread's network namespace.
    pub fn create(spec: &RedirectSpec) -> Result<NftTable, NftError> {
        validate(spec)?;
        let mut socket = netlink::Socket::open()?;
        match socket.execute(&batch::delete_table(&spec.table)) {
            Ok(()) => tracing::info!(table = %spec.table, "deleted a stale nft table"),
            Err(err) if err.errno() == Some(libc::ENOENT) => {}
            Err(err) => return Err(err.owned_by_other(&spec.table)),
        }
        let without_udp = match socket.execute(&batch::create(spec)) {
            Ok(()) => false,
            Err(err) => {
                let err = err.owned_by_other(&spec.table);
                let Some(plain) = without_udp(spec).filter(|_| udp_may_be_the_cause(&err)) else {
                    return Err(err);
                };
                socket
                    .execute(&batch::create(&plain))
                    .map_err(|e| e.owned_by_other(&spec.table))?;
                log_udp_refused(&err);
                true
            }
        };
        tracing::debug!(table = %spec.table, redirect = spec.redirect, "nft table created");
        let mut table = NftTable {
            socket,
            table: spec.table.clone(),
            without_udp,
        };
        if !spec.bypass_names {
            if let Err(err) = table.remove_companion() {
                tracing::warn!(%err, "cannot remove a stale table of name sets");
            }
        }
        Ok(table)
    }

    /// Replace the chains' contents with `spec` in one atomic batch. `spec.table` must be
    /// the name the table was created with.
    pub fn apply(&mut self, spec: &RedirectSpec) -> Result<(), NftError> {
        validate(spec)?;
        if spec.table != self.table {
            let reason = format!(
                "table is {:?}, cannot switch to {:?}",
                self.table, spec.table
            );
            return Err(NftError::InvalidSpec { reason });
        }
        let plain = without_udp(spec).filter(|_| self.without_udp);
        self.socket
            .execute(&batch::replace(plain.as_ref().unwrap_or(spec)))
            .map_err(|e| e.owned_by_other(&self.table))?;
        if !spec.bypass_names {
            self.remove_companion()?;
        }
        tracing::debug!(table = %self.table, redirect = spec.redirect, "nft table updated");
        Ok(())
    }

    /// Delete the companion table of the name sets, if there is one (`name_sets.rs`).
    fn remove_companion(&mut self) -> Result<(), NftError> {
        let names = name_sets::names_table(&self.table);
        match self.socket.execute(&batch::delete_table(&names)) {
            Ok(()) => {
                tracing::info!(table = %names, "removed the name sets' table");
                Ok(())
            }
            Err(err) if err.errno() == Some(libc::ENOENT) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// True when nf_tables refused the UDP interception and the table runs without it.
    pub fn udp_refused(&self) -> bool {
        self.without_udp
    }

    /// Delete the table and its companion now. Dropping the value also removes the table,
    /// when the socket closes, but not the companion (the next start removes it).
    pub fn remove(mut self) -> Result<(), NftError> {
        let companion = self.remove_companion();
        let NftTable {
            mut socket, table, ..
        } = self;
        socket
            .execute(&batch::delete_table(&table))
            .map_err(|e| e.owned_by_other(&table))?;
        companion
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }
}

/// `spec` without its UDP interception, if it has one.
fn without_udp(spec: &RedirectSpec) -> Option<RedirectSpec> {
    spec.udp.as_ref()?;
    Some(RedirectSpec {
        udp: None,
        ..spec.clone()
    })
}

/// Whether a refused batch may be the kernel's lack of tproxy (or of another expression
/// the UDP chains use): nf_tables answers a missing expression type with `ENOENT` or
/// `EOPNOTSUPP`. Ownership and socket failures are not that.
fn udp_may_be_the_cause(err: &NftError) -> bool {
    matches!(err, NftError::Rejected { .. })
        && matches!(err.errno(), Some(libc::ENOENT | libc::EOPNOTSUPP))
}

fn log_udp_refused(err: &NftError) {
    tracing::error!(
        %err,
        "nf_tables refused the UDP interception (does the kernel have nft_tproxy? on \
         OpenWrt: opkg install kmod-nft-tproxy; or set [udp] enabled = false): LAN UDP \
         leaves by NAT, TCP is redirected as usual"
    );
}

/// Check that `spec` can be put in a table: nft identifier for the table, valid Linux
/// interface names, a non-zero port. [`NftTable::create`] and [`NftTable::apply`] call it.
pub fn validate(spec: &RedirectSpec) -> Result<(), NftError> {
    let invalid = |reason: String| Err(NftError::InvalidSpec { reason });
    let t = spec.table.as_str();
    let ident_start = t
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let ident_rest = t
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c));
    if !ident_start || !ident_rest || t.len() > 255 {
        return invalid(format!("table name {t:?} is not an nft identifier"));
    }
    for name in &spec.lan_interfaces {
        let bad_char = name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "/:\"\\*".contains(c));
        if name.is_empty()
            || name.len() >= expr::IFNAMSIZ
            || bad_char
            || name == "."
            || name == ".."
        {
            return invalid(format!("{name:?} is not a valid interface name"));
        }
    }
    if spec.port == 0 {
        return invalid("redirect port is 0".to_owned());
    }
    Ok(())
}
