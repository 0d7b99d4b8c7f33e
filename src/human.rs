//! [`HumanDuration`]: a duration as a person reads it in an error message or a log line.

use std::fmt;
use std::time::Duration;

/// Displays a duration the way a person reads it: `850 ms`, `12.2 s`, `2 min 5 s`, `1 h 3 min`.
/// Errors of this crate (and of `callagent-websdk`) print durations this way.
///
/// ```
/// use std::time::Duration;
/// use callagent_retry::HumanDuration;
/// assert_eq!(HumanDuration(Duration::from_micros(12_155_642)).to_string(), "12.2 s");
/// assert_eq!(HumanDuration(Duration::from_millis(250)).to_string(), "250 ms");
/// assert_eq!(HumanDuration(Duration::from_secs(125)).to_string(), "2 min 5 s");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let ms = d.as_millis();
        if d < Duration::from_millis(1) {
            return write!(f, "{} µs", d.as_micros());
        }
        if ms < 1000 {
            return write!(f, "{ms} ms");
        }
        // Rounded to a tenth of a second first, so 59.96 s reads "1 min 0 s", not "60.0 s".
        let tenths = (d.as_secs_f64() * 10.0).round() as u64;
        if tenths < 600 {
            let (s, t) = (tenths / 10, tenths % 10);
            return if t == 0 { write!(f, "{s} s") } else { write!(f, "{s}.{t} s") };
        }
        let secs = (tenths + 5) / 10;
        if secs < 3600 {
            return write!(f, "{} min {} s", secs / 60, secs % 60);
        }
        let mins = (secs + 30) / 60;
        write!(f, "{} h {} min", mins / 60, mins % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(d: Duration) -> String {
        HumanDuration(d).to_string()
    }

    #[test]
    fn durations_read_as_a_person_says_them() {
        assert_eq!(h(Duration::ZERO), "0 µs");
        assert_eq!(h(Duration::from_micros(1500)), "1 ms");
        assert_eq!(h(Duration::from_millis(999)), "999 ms");
        assert_eq!(h(Duration::from_secs(1)), "1 s");
        assert_eq!(h(Duration::from_millis(4_049)), "4 s");
        assert_eq!(h(Duration::from_millis(59_960)), "1 min 0 s");
        assert_eq!(h(Duration::from_secs(3 * 3600 + 29)), "3 h 0 min");
        assert_eq!(h(Duration::from_secs(3 * 3600 + 31)), "3 h 1 min");
    }
}
