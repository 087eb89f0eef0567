//! Link profiles: the households of issue 11, named in one place for the
//! tests and the benchmark. A [`Profile`] lists one [`LinkSpec`] per WAN.
//!
//! | profile      | WAN 1                     | WAN 2                                   | WAN 3          |
//! |--------------|---------------------------|-----------------------------------------|----------------|
//! | `dsl-lte`    | 40 Mbit/s, 10 ms          | 60 Mbit/s, 60 ms, 1 % loss, 10 ms jitter |                |
//! | `starlink`   | 100 Mbit/s, 40 ms, 100 ms outage every 15 s | 20 Mbit/s, 15 ms       |                |
//! | `bad-backup` | 50 Mbit/s, 15 ms          | 5 Mbit/s, 300 ms, 3 % loss              |                |
//! | `three`      | 20 Mbit/s, 10 ms          | 30 Mbit/s, 30 ms                        | 50 Mbit/s, 60 ms |
//!
//! How a spec becomes a link ([`LinkSpec::delay_args`], `mpbond-tb delay`):
//! * **rate**: the bed's TBF shapers, both directions (router `wan<i>` for
//!   upload, ISP `cust` for download), burst max(128 KiB, 4 ms of rate),
//!   reshaped by [`TestBed::apply_profile`] as a line's own bit rate behaves
//!   ([`crate::shaping::PROFILE_SHAPE`]): a queue of 25 ms at the rate, and a
//!   peak-rate bucket of four frames at 1 % above the rate, so the token bucket's
//!   burst never leaves faster than the line (it inflated BBR's bandwidth samples
//!   2.5× and cost `three` 15–25 % retransmissions: docs/PERFORMANCE.md, case 17;
//!   a bucket of one frame cost 4–14 % of the rate: [`crate::shaping`]).
//! * **RTT**: split evenly, `rtt/2` one way in each direction, on top of the
//!   bed's own (well under 1 ms unloaded).
//! * **jitter**: the spread of the RTT: each direction draws its one-way
//!   delay uniformly from `rtt/2 ± jitter/2`, so an idle round trip lies in
//!   `rtt ± jitter`. Each direction stays a FIFO, so under load the delays
//!   bunch at the top and the loaded RTT approaches `rtt + jitter`.
//! * **loss**: `loss_pct` applies to each direction on its own, per packet
//!   (GSO is off into the delay line), so data and ACKs both lose that share.
//! * **outage**: the last `length` of every `every` (counted from the delay
//!   line's start) loses everything both ways.
//!
//! ```no_run
//! use mpbond_tests::profiles::Profile;
//! use mpbond_tests::TestBed;
//! let profile: Profile = "dsl-lte".parse().unwrap();
//! let bed = TestBed::builder().profile(profile).build();  // TBF rates 40 and 60
//! let mut links = bed.apply_profile(profile).unwrap();     // delay, jitter, loss
//! println!("{} seeds {:?}", profile, links.seeds());
//! let stats = links.line_mut(2).unwrap().stats().unwrap();
//! # let _ = stats;
//! ```
//! Set `MPBOND_LINK_SEED` to repeat a run's losses and jitter: WAN `i` gets
//! seed `MPBOND_LINK_SEED + i`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::bed::{TestBed, TestBedBuilder};
use crate::delay::WanDelays;
use crate::error::BedError;

/// A scripted outage: total loss both ways for `length`, once every `every`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    pub every: Duration,
    pub length: Duration,
}

/// One emulated WAN link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkSpec {
    /// TBF rate, each direction.
    pub rate_mbit: u32,
    /// Round-trip time the link adds, split evenly between the directions.
    pub rtt_ms: u32,
    /// Spread of the RTT (± half of it each direction).
    pub jitter_ms: u32,
    /// Random loss in percent, each direction on its own.
    pub loss_pct: f64,
    /// Scripted outages, if any.
    pub outage: Option<Outage>,
}

impl LinkSpec {
    /// A clean link: `rate_mbit` at `rtt_ms`, no jitter, loss or outages.
    pub const fn clean(rate_mbit: u32, rtt_ms: u32) -> Self {
        Self {
            rate_mbit,
            rtt_ms,
            jitter_ms: 0,
            loss_pct: 0.0,
            outage: None,
        }
    }

    /// The `mpbond-tb delay` options for this link (without `--a`/`--b`).
    pub fn delay_args(&self, seed: Option<u64>) -> Vec<String> {
        let mut args = vec![
            "--ms".to_owned(),
            format!("{}", f64::from(self.rtt_ms) / 2.0),
            "--jitter-ms".to_owned(),
            format!("{}", f64::from(self.jitter_ms) / 2.0),
            "--loss-pct".to_owned(),
            format!("{}", self.loss_pct),
        ];
        if let Some(outage) = self.outage {
            args.push("--outage-every-ms".into());
            args.push(outage.every.as_millis().to_string());
            args.push("--outage-ms".into());
            args.push(outage.length.as_millis().to_string());
        }
        if let Some(seed) = seed {
            args.push("--seed".into());
            args.push(seed.to_string());
        }
        args
    }
}

/// The households of issue 11.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Profile {
    /// DSL 40 Mbit/s at 10 ms + LTE 60 Mbit/s at 60 ms, 1 % loss, 10 ms jitter.
    DslLte,
    /// Starlink 100 Mbit/s at 40 ms with a 100 ms outage every 15 s + DSL 20 Mbit/s at 15 ms.
    Starlink,
    /// 50 Mbit/s at 15 ms + a bad backup: 5 Mbit/s at 300 ms with 3 % loss.
    BadBackup,
    /// 20/30/50 Mbit/s at 10/30/60 ms.
    Three,
}

const STARLINK_OUTAGE: Outage = Outage {
    every: Duration::from_secs(15),
    length: Duration::from_millis(100),
};

const DSL_LTE: [LinkSpec; 2] = [
    LinkSpec::clean(40, 10),
    LinkSpec {
        rate_mbit: 60,
        rtt_ms: 60,
        jitter_ms: 10,
        loss_pct: 1.0,
        outage: None,
    },
];
const STARLINK: [LinkSpec; 2] = [
    LinkSpec {
        rate_mbit: 100,
        rtt_ms: 40,
        jitter_ms: 0,
        loss_pct: 0.0,
        outage: Some(STARLINK_OUTAGE),
    },
    LinkSpec::clean(20, 15),
];
const BAD_BACKUP: [LinkSpec; 2] = [
    LinkSpec::clean(50, 15),
    LinkSpec {
        rate_mbit: 5,
        rtt_ms: 300,
        jitter_ms: 0,
        loss_pct: 3.0,
        outage: None,
    },
];
const THREE: [LinkSpec; 3] = [
    LinkSpec::clean(20, 10),
    LinkSpec::clean(30, 30),
    LinkSpec::clean(50, 60),
];

impl Profile {
    /// Every profile, in the order the tests and the benchmark run them.
    pub const ALL: [Profile; 4] = [
        Profile::DslLte,
        Profile::Starlink,
        Profile::BadBackup,
        Profile::Three,
    ];

    /// The name used on command lines and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Profile::DslLte => "dsl-lte",
            Profile::Starlink => "starlink",
            Profile::BadBackup => "bad-backup",
            Profile::Three => "three",
        }
    }

    /// One link per WAN, WAN 1 first.
    pub fn links(self) -> &'static [LinkSpec] {
        match self {
            Profile::DslLte => &DSL_LTE,
            Profile::Starlink => &STARLINK,
            Profile::BadBackup => &BAD_BACKUP,
            Profile::Three => &THREE,
        }
    }

    /// The WANs' rates in Mbit/s, WAN 1 first.
    pub fn rates(self) -> Vec<u32> {
        self.links().iter().map(|l| l.rate_mbit).collect()
    }

    /// Σ of the WANs' rates.
    pub fn sum_rate_mbit(self) -> u32 {
        self.links().iter().map(|l| l.rate_mbit).sum()
    }

    /// The best single WAN's rate.
    pub fn best_rate_mbit(self) -> u32 {
        self.links().iter().map(|l| l.rate_mbit).max().unwrap_or(0)
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a [`Profile`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown link profile {0:?} (dsl-lte, starlink, bad-backup, three)")]
pub struct UnknownProfile(pub String);

impl FromStr for Profile {
    type Err = UnknownProfile;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Profile::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownProfile(s.to_owned()))
    }
}

impl TestBedBuilder {
    /// One WAN per link of `profile`, shaped to its rate. Start the delay
    /// lines with [`TestBed::apply_profile`] once the bed is built.
    pub fn profile(self, profile: Profile) -> Self {
        self.wans(&profile.rates())
    }
}

impl TestBed {
    /// Emulate `profile`'s links (delay, jitter, loss, outages) on this bed's
    /// WANs, whose rates must be the profile's ([`TestBedBuilder::profile`]), and
    /// reshape their TBFs as a line's own rate does
    /// ([`crate::shaping::PROFILE_SHAPE`]: 25 ms of queue, no bursts above the rate).
    /// Seeds come from `MPBOND_LINK_SEED` (+ WAN number) or are random.
    pub fn apply_profile(&self, profile: Profile) -> Result<WanDelays, BedError> {
        if self.wan_rates() != profile.rates() {
            return Err(BedError::Usage(format!(
                "profile {profile} needs WANs {:?}, the bed has {:?}",
                profile.rates(),
                self.wan_rates()
            )));
        }
        self.reshape_tbf(crate::shaping::PROFILE_SHAPE)?;
        let base: Option<u64> = std::env::var("MPBOND_LINK_SEED")
            .ok()
            .and_then(|s| s.parse().ok());
        profile
            .links()
            .iter()
            .enumerate()
            .map(|(k, link)| {
                let i = k + 1;
                self.add_wan_emulation(i, link, base.map(|b| b.wrapping_add(i as u64)))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Profile::ALL {
            assert_eq!(p.name().parse::<Profile>(), Ok(p));
            assert_eq!(p.to_string(), p.name());
        }
        assert!("dsl".parse::<Profile>().is_err());
    }

    #[test]
    fn profiles_are_the_issues() {
        assert_eq!(Profile::DslLte.rates(), [40, 60]);
        assert_eq!(Profile::DslLte.links()[1].loss_pct, 1.0);
        assert_eq!(Profile::DslLte.links()[1].jitter_ms, 10);
        assert_eq!(Profile::Starlink.links()[0].outage, Some(STARLINK_OUTAGE));
        assert_eq!(Profile::Starlink.best_rate_mbit(), 100);
        assert_eq!(Profile::BadBackup.links()[1].rtt_ms, 300);
        assert_eq!(Profile::BadBackup.links()[1].loss_pct, 3.0);
        assert_eq!(Profile::Three.sum_rate_mbit(), 100);
        assert_eq!(Profile::Three.rates(), [20, 30, 50]);
    }

    #[test]
    fn delay_args_split_the_rtt_and_jitter() {
        let args = Profile::DslLte.links()[1].delay_args(Some(7)).join(" ");
        assert_eq!(
            args, "--ms 30 --jitter-ms 5 --loss-pct 1 --seed 7",
            "{args}"
        );
        let args = Profile::Starlink.links()[0].delay_args(None).join(" ");
        assert_eq!(
            args,
            "--ms 20 --jitter-ms 0 --loss-pct 0 --outage-every-ms 15000 --outage-ms 100"
        );
        let odd = LinkSpec::clean(20, 15).delay_args(None).join(" ");
        assert!(odd.starts_with("--ms 7.5 "), "{odd}");
    }
}
