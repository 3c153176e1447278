//! `status --warn`/`--crit`: a time before expiry (`21d`) or a share of the certificate's own
//! lifetime (`25%`). Lifetimes now range from 160 hours (Let's Encrypt's `shortlived` profile)
//! through 45 and 64 days to 90: a fixed `21d` calls a fresh 160-hour certificate CRITICAL and a
//! healthy 45-day one WARNING for days of every cycle, so the defaults are shares: 25 % and 8 %,
//! which for a 90-day certificate is about today's 21 and 7 days.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// One threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// Within this time of notAfter.
    Before(Duration),
    /// Within this share (0 < share < 1) of notAfter − notBefore.
    Share(f64),
}

/// The default `--warn`: a quarter of the lifetime left.
pub const DEFAULT_WARN: Threshold = Threshold::Share(0.25);
/// The default `--crit`: 8 % of the lifetime left.
pub const DEFAULT_CRIT: Threshold = Threshold::Share(0.08);

impl Threshold {
    /// Seconds before notAfter at which the threshold is crossed, for a certificate of
    /// `lifetime` seconds; a share of an unknown lifetime is unknown.
    pub fn seconds(self, lifetime: Option<i64>) -> Option<i64> {
        match self {
            Threshold::Before(d) => Some(d.as_secs() as i64),
            Threshold::Share(s) => lifetime.map(|l| (l as f64 * s).round() as i64),
        }
    }
}

impl FromStr for Threshold {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(number) = s.strip_suffix('%') {
            return match number.trim().parse::<f64>() {
                Ok(p) if p > 0.0 && p < 100.0 => Ok(Threshold::Share(p / 100.0)),
                _ => Err(format!(
                    "{s:?}: expected a share of the lifetime between 0% and 100% (e.g. 25%) or a time (e.g. 21d)"
                )),
            };
        }
        humantime::parse_duration(s).map(Threshold::Before).map_err(|e| {
            format!("{s:?}: {e}: expected a time (e.g. 21d, 30h) or a share of the lifetime (e.g. 25%)")
        })
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Threshold::Before(d) => write!(f, "{}", humantime::format_duration(*d)),
            Threshold::Share(s) => write!(f, "{}%", (s * 1000.0).round() / 10.0),
        }
    }
}

/// Short human form of a number of seconds left: days from two days up, hours below.
pub fn left(seconds: i64) -> String {
    if seconds.abs() >= 2 * 86400 {
        format!("{}d", seconds.div_euclid(86400))
    } else {
        format!("{}h", seconds.div_euclid(3600))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3600;
    const DAY: i64 = 86400;

    #[test]
    fn shares_and_times_parse_and_print_back() {
        assert_eq!("25%".parse(), Ok(Threshold::Share(0.25)));
        assert_eq!(
            "21d".parse(),
            Ok(Threshold::Before(Duration::from_secs(21 * 86400)))
        );
        assert_eq!(Threshold::Share(0.08).to_string(), "8%");
        assert_eq!(Threshold::Share(0.125).to_string(), "12.5%");
        assert_eq!(
            Threshold::Before(Duration::from_secs(7 * 86400)).to_string(),
            "7days"
        );
        for bad in ["0%", "100%", "-5%", "x%", "12", "soon"] {
            let err = bad.parse::<Threshold>().unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn shares_follow_each_lifetime() {
        // A 160-hour certificate: warn at 40 h, critical at 12.8 h left.
        assert_eq!(DEFAULT_WARN.seconds(Some(160 * HOUR)), Some(40 * HOUR));
        assert_eq!(DEFAULT_CRIT.seconds(Some(160 * HOUR)), Some(46080));
        // A 90-day one: 22.5 and 7.2 days, about the old 21d / 7d.
        assert_eq!(DEFAULT_WARN.seconds(Some(90 * DAY)), Some(1944000));
        assert_eq!(DEFAULT_CRIT.seconds(Some(90 * DAY)), Some(622080));
        // A time ignores the lifetime; a share of an unknown one is unknown.
        let week = Threshold::Before(Duration::from_secs(7 * 86400));
        assert_eq!(week.seconds(None), Some(7 * DAY));
        assert_eq!(DEFAULT_WARN.seconds(None), None);
    }

    #[test]
    fn left_reads_in_days_or_hours() {
        assert_eq!(left(20 * DAY + 5), "20d");
        assert_eq!(left(30 * HOUR), "30h");
        assert_eq!(left(-3 * HOUR), "-3h");
    }
}
