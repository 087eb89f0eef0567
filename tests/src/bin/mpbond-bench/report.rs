//! The suite's result model: one [`Figure`] per measured quantity, with its
//! target verdict, printed as a table and written as JSON.

use serde::Serialize;

/// How long the suite runs: `Short` proves every case works (CI), `Full`
/// gives the documented figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Short,
    Full,
}

impl Mode {
    /// Interleaved repetitions of each comparison (medians are reported).
    pub fn runs(self) -> usize {
        match self {
            Mode::Short => 1,
            Mode::Full => 3,
        }
    }
}

/// A target a figure must meet.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Target {
    AtLeast(f64),
    AtMost(f64),
}

impl Target {
    pub fn met(self, value: f64) -> bool {
        match self {
            Target::AtLeast(t) => value >= t,
            Target::AtMost(t) => value <= t,
        }
    }
}

/// One reported quantity: usually a ratio measured in one run.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// Case number and name, e.g. "1 aggregation".
    pub case: String,
    /// What was measured, e.g. "download 2 WANs: mpbond / direct MPTCP".
    pub name: String,
    /// The median of `runs`.
    pub value: f64,
    /// "ratio", "Mbit/s", "s/GB", "KiB", "ms", "packets"...
    pub unit: String,
    pub target: Option<Target>,
    /// Each run's value, in run order.
    pub runs: Vec<f64>,
    /// CPU steal over the measurement, percent of all CPU time (from /proc/stat).
    pub steal_pct: f64,
    /// Free-form context: per-WAN shares, absolute numbers behind a ratio.
    pub detail: String,
}

impl Figure {
    /// `None` without a target, else whether it is met.
    pub fn pass(&self) -> Option<bool> {
        self.target.map(|t| t.met(self.value))
    }
}

/// What the figures of one measurement share: the case, the CPU steal over it, and one
/// detail line.
#[derive(Debug, Clone)]
pub struct Measurement<'a> {
    pub case: &'a str,
    pub steal_pct: f64,
    pub detail: String,
}

impl Measurement<'_> {
    /// The figure `name`: the median of `runs`, in `unit`, against `target`.
    pub fn figure(
        &self,
        name: String,
        runs: Vec<f64>,
        unit: &str,
        target: Option<Target>,
    ) -> Figure {
        Figure {
            case: self.case.into(),
            name,
            value: median(&runs),
            unit: unit.into(),
            target,
            runs,
            steal_pct: self.steal_pct,
            detail: self.detail.clone(),
        }
    }
}

/// The median of `values` (mean of the middle two for even counts); NaN if empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}
