//! A download's receive timeline, from the samples `mpbond-tb fetch` reports:
//! where events fall on it, the longest gap without a byte after one, and the
//! goodput over a window. Pure, so the arithmetic is unit tested.
//!
//! Sample `i` covers `[i × step, (i + 1) × step)` milliseconds after the
//! fetch's start; an event's offset is its wall-clock time minus the fetch's
//! `started_unix_ms` (both processes read the same clock).

use std::time::{SystemTime, UNIX_EPOCH};

use mpbond_tests::FetchReport;

/// Milliseconds since the Unix epoch now, to place an event on a timeline.
pub fn unix_ms_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0
}

/// A stretch without a received byte.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gap {
    /// Where it starts, milliseconds after the fetch started.
    pub start_ms: f64,
    /// How long it lasts, in milliseconds (a multiple of the sample step).
    pub len_ms: f64,
}

impl Gap {
    /// Where it ends.
    pub fn end_ms(&self) -> f64 {
        self.start_ms + self.len_ms
    }
}

/// The sampled goodput of one download.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// Sample length in milliseconds.
    step_ms: f64,
    /// Goodput of each sample, Mbit/s.
    mbit: Vec<f64>,
    /// Wall clock of sample 0's start, ms since the epoch.
    started_unix_ms: f64,
    /// Whether the transfer completed (else the time after it counts as nothing received).
    complete: bool,
}

impl Timeline {
    /// The timeline of a fetch report.
    pub fn of(r: &FetchReport) -> Self {
        Self::new(
            r.sample_ms as f64,
            r.samples_mbit.clone(),
            r.started_unix_ms,
            r.ok,
        )
    }

    /// A timeline of `mbit` samples of `step_ms` each, starting at `started_unix_ms`.
    pub fn new(step_ms: f64, mbit: Vec<f64>, started_unix_ms: f64, complete: bool) -> Self {
        Self {
            step_ms: step_ms.max(1.0),
            mbit,
            started_unix_ms,
            complete,
        }
    }

    /// Offset on this timeline of an event at wall-clock `unix_ms`.
    pub fn offset_of(&self, unix_ms: f64) -> f64 {
        unix_ms - self.started_unix_ms
    }

    fn index_at(&self, offset_ms: f64) -> usize {
        (offset_ms.max(0.0) / self.step_ms).floor() as usize
    }

    /// The longest run of empty samples in `[from_ms, to_ms)` (sample-aligned):
    /// the longest stall there, to the sample step. A zero-length gap at
    /// `from_ms` if every sample there carried data.
    pub fn longest_gap(&self, from_ms: f64, to_ms: f64) -> Gap {
        let (first, end) = (self.index_at(from_ms), self.index_at(to_ms));
        let mut best = (first, 0usize);
        let mut run_start = None;
        for i in first..end.min(self.mbit.len()) {
            if self.mbit[i] <= 0.0 {
                let s = *run_start.get_or_insert(i);
                if i + 1 - s > best.1 {
                    best = (s, i + 1 - s);
                }
            } else {
                run_start = None;
            }
        }
        Gap {
            start_ms: best.0 as f64 * self.step_ms,
            len_ms: best.1 as f64 * self.step_ms,
        }
    }

    /// Mean goodput in Mbit/s over the whole samples in `[from_ms, to_ms)`.
    /// After the last sample, a broken transfer counts as receiving nothing
    /// and a complete one is not counted; NaN if no sample is left.
    pub fn mean_mbit(&self, from_ms: f64, to_ms: f64) -> f64 {
        let (first, end) = (self.index_at(from_ms), self.index_at(to_ms));
        let end = if self.complete {
            end.min(self.mbit.len())
        } else {
            end
        };
        if end <= first {
            return f64::NAN;
        }
        let sum: f64 = (first..end)
            .map(|i| self.mbit.get(i).copied().unwrap_or(0.0))
            .sum();
        sum / (end - first) as f64
    }

    /// How long the timeline is, in milliseconds.
    pub fn len_ms(&self) -> f64 {
        self.mbit.len() as f64 * self.step_ms
    }

    /// Dips in `[from_ms, to_ms)`: maximal runs of samples below `below_mbit`, with the
    /// offset of each run's start (sample-aligned). Two runs with one good sample between
    /// them are one dip: a single sample can straddle the end of a stall.
    pub fn dips(&self, from_ms: f64, to_ms: f64, below_mbit: f64) -> Vec<f64> {
        let (first, end) = (self.index_at(from_ms), self.index_at(to_ms));
        let mut starts = Vec::new();
        let mut last_low: Option<usize> = None;
        for i in first..end.min(self.mbit.len()) {
            if self.mbit[i] < below_mbit {
                if last_low.map_or(true, |l| i > l + 2) {
                    starts.push(i as f64 * self.step_ms);
                }
                last_low = Some(i);
            }
        }
        starts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dips_are_runs_below_the_threshold_merged_across_one_good_sample() {
        let mbit = vec![
            90.0, 90.0, 0.0, 0.0, 50.0, 10.0, 60.0, 60.0, 60.0, 20.0, 60.0,
        ];
        let t = Timeline::new(100.0, mbit, 0.0, true);
        assert_eq!(t.dips(0.0, 1100.0, 30.0), vec![200.0, 900.0]);
        assert_eq!(t.dips(600.0, 900.0, 30.0), Vec::<f64>::new());
        assert_eq!(t.dips(0.0, 1100.0, 5.0), vec![200.0]);
    }

    /// 10 ms samples: 100 at 50 Mbit/s, 30 empty, 100 at 40.
    fn stalled() -> Timeline {
        let mut v = vec![50.0; 100];
        v.extend([0.0; 30]);
        v.extend([40.0; 100]);
        Timeline::new(10.0, v, 1_000_000.0, true)
    }

    #[test]
    fn events_are_placed_by_the_wall_clock() {
        assert_eq!(stalled().offset_of(1_000_990.0), 990.0);
        assert_eq!(stalled().len_ms(), 2300.0);
    }

    #[test]
    fn the_longest_gap_after_an_event_is_found_to_the_sample() {
        let g = stalled().longest_gap(900.0, 2300.0);
        assert_eq!(
            g,
            Gap {
                start_ms: 1000.0,
                len_ms: 300.0
            }
        );
        assert_eq!(g.end_ms(), 1300.0);
        // A gap that began before the window is cut at its start.
        assert_eq!(stalled().longest_gap(1200.0, 2300.0).len_ms, 100.0);
        // None after it.
        let none = stalled().longest_gap(1400.0, 2300.0);
        assert_eq!((none.start_ms, none.len_ms), (1400.0, 0.0));
        // A window past the end finds nothing and does not panic.
        assert_eq!(stalled().longest_gap(5000.0, 9000.0).len_ms, 0.0);
    }

    #[test]
    fn goodput_windows_before_and_after() {
        let t = stalled();
        assert_eq!(t.mean_mbit(0.0, 1000.0), 50.0);
        assert_eq!(t.mean_mbit(1300.0, 2300.0), 40.0);
        assert_eq!(t.mean_mbit(900.0, 1100.0), 25.0);
        // A complete transfer's window past its end counts only what exists ...
        assert_eq!(t.mean_mbit(2200.0, 4200.0), 40.0);
        assert!(t.mean_mbit(3000.0, 4000.0).is_nan());
        // ... a broken one's counts the rest as nothing.
        let broken = Timeline::new(10.0, vec![40.0; 10], 0.0, false);
        assert_eq!(broken.mean_mbit(0.0, 200.0), 20.0);
        assert!(broken.mean_mbit(100.0, 100.0).is_nan());
    }
}
