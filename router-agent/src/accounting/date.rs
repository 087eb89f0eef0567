//! The civil date, and the billing month a date falls in.

use serde::{Deserialize, Serialize};

/// A day of the proleptic Gregorian calendar, in local time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Date {
    pub year: i32,
    /// 1-12.
    pub month: u8,
    /// 1-31.
    pub day: u8,
}

impl Date {
    pub const fn new(year: i32, month: u8, day: u8) -> Date {
        Date { year, month, day }
    }

    /// The first day of the billing month `self` falls in, for a month that starts on
    /// `reset_day` (1-28, so it exists in every month).
    pub fn period_start(self, reset_day: u8) -> Date {
        let reset_day = reset_day.clamp(1, 28);
        if self.day >= reset_day {
            Date::new(self.year, self.month, reset_day)
        } else if self.month == 1 {
            Date::new(self.year - 1, 12, reset_day)
        } else {
            Date::new(self.year, self.month - 1, reset_day)
        }
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_billing_month_starts_on_the_reset_day() {
        let d = Date::new(2026, 3, 14);
        assert_eq!(d.period_start(1), Date::new(2026, 3, 1));
        assert_eq!(d.period_start(14), Date::new(2026, 3, 14));
        assert_eq!(d.period_start(15), Date::new(2026, 2, 15));
        assert_eq!(
            Date::new(2026, 1, 3).period_start(28),
            Date::new(2025, 12, 28)
        );
        assert_eq!(
            Date::new(2026, 2, 28).period_start(28),
            Date::new(2026, 2, 28)
        );
        assert_eq!(d.to_string(), "2026-03-14");
    }
}
