//! The delay before each retry: an exponential schedule with jitter.
//!
//! The schedule (initial delay, multiplier, cap) is the `backoff` crate's [`ExponentialBackoff`];
//! jitter is applied on top of the schedule's nominal delay `d` with a per-call random source that
//! can be seeded, so a run is reproducible:
//!
//! | [`Jitter`] | delay | note |
//! |---|---|---|
//! | `full` (default) | uniform in `[0, d]` | least total work under contention (AWS) |
//! | `equal` | uniform in `[d/2, d]` | never waits less than half the schedule |
//! | `decorrelated` | `min(cap, uniform(initial, 3 * prev))` | `prev` starts at `initial`; ignores the multiplier |
//! | `proportional` | uniform in `[d(1 - f), d(1 + f)]`, capped | the `backoff` crate's `randomization_factor` `f` |
//! | `none` | exactly `d` | the schedule itself |
//!
//! Two deliberate departures from using `backoff` end to end: its `max_elapsed_time` reads the
//! wall clock, so the total deadline is enforced by the caller on tokio's clock instead; and its
//! randomization draws from the thread RNG, which cannot be seeded, so `proportional` applies the
//! same formula with this module's seeded source. The schedule is always stepped by
//! [`ExponentialBackoff`] with its own randomization set to zero.
//!

use std::time::{Duration, Instant};

use super::{MAX_ATTEMPTS, RetryConfig};

use ::backoff::backoff::Backoff as _;
use ::backoff::{Clock, exponential::ExponentialBackoff};
use serde::{Deserialize, Serialize};

/// How the nominal delay is randomized.
///
/// | jitter | delay for the schedule's nominal delay `d` |
/// |---|---|
/// | `full` (default) | uniform in `[0, d]`: least total work under contention (AWS) |
/// | `equal` | uniform in `[d/2, d]`: never less than half the schedule |
/// | `decorrelated` | `min(cap, uniform(initial, 3 * previous))`, ignoring the multiplier |
/// | `proportional` | uniform in `[d(1 - f), d(1 + f)]`, capped (the `backoff` crate's `randomization_factor` `f`) |
/// | `none` | exactly `d` |
///
/// `#[non_exhaustive]`: another kind may be added.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Jitter {
    /// Uniform in `[0, d]`.
    #[default]
    Full,
    /// Uniform in `[d/2, d]`.
    Equal,
    /// `min(cap, uniform(initial, 3 * previous))`.
    Decorrelated,
    /// Uniform in `[d(1 - f), d(1 + f)]` for the randomization factor `f`, capped.
    Proportional,
    /// Exactly the schedule.
    None,
}

impl Jitter {
    /// The config spelling (`"full"`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Equal => "equal",
            Self::Decorrelated => "decorrelated",
            Self::Proportional => "proportional",
            Self::None => "none",
        }
    }
}

/// `backoff` consults its clock only for `max_elapsed_time`, which is never set here; a frozen
/// clock keeps the schedule free of any time source.
#[derive(Debug, Clone, Copy)]
struct FrozenClock(Instant);

impl Clock for FrozenClock {
    fn now(&self) -> Instant {
        self.0
    }
}

/// The shape of the delays, shared by every call: the nominal schedule, stepped once by
/// `backoff`'s [`ExponentialBackoff`] when the layer is built, and the jitter applied per call.
#[derive(Debug, Clone)]
pub(crate) struct BackoffSchedule {
    /// The nominal delay before each retry, in order, up to the first that reaches the cap.
    nominal: Box<[Duration]>,
    initial: Duration,
    cap: Duration,
    jitter: Jitter,
    randomization_factor: f64,
}

impl BackoffSchedule {
    /// The schedule of a validated config.
    pub(crate) fn of(config: &RetryConfig) -> Self {
        Self::new(
            config.initial_backoff,
            config.max_backoff,
            config.multiplier,
            config.jitter,
            config.randomization_factor,
        )
    }

    /// A schedule starting at `initial`, multiplied by `multiplier` after each retry, capped at
    /// `max`. Crate-private because it trusts its inputs: only validated configs reach it
    /// (a `randomization_factor` above 1 or a NaN multiplier would misbehave).
    pub(crate) fn new(
        initial: Duration,
        max: Duration,
        multiplier: f64,
        jitter: Jitter,
        randomization_factor: f64,
    ) -> Self {
        // Read once, never consulted (no max_elapsed_time): the schedule itself has no clock.
        let epoch = Instant::now();
        let mut steps = ExponentialBackoff {
            current_interval: initial,
            initial_interval: initial,
            randomization_factor: 0.0,
            multiplier,
            max_interval: max,
            start_time: epoch,
            max_elapsed_time: None,
            clock: FrozenClock(epoch),
        };
        // Stepped here, once, so a retry reads its nominal delay instead of stepping floats; past
        // the table every delay is the cap. No more entries than a call can have retries.
        let mut nominal = Vec::new();
        while nominal.len() < MAX_ATTEMPTS as usize {
            // With randomization 0 and no max_elapsed_time this is the bare schedule, never None.
            let d = steps.next_backoff().unwrap_or(max).min(max);
            nominal.push(d);
            if d >= max {
                break;
            }
        }
        Self { nominal: nominal.into(), initial, cap: max, jitter, randomization_factor }
    }

    /// The per-call state, with its random source seeded from `seed`: 24 bytes, no allocation.
    pub(crate) fn start(&self, seed: u64) -> Backoff {
        Backoff { retries: 0, rng: seed, previous_ns: as_nanos(self.initial) }
    }

    /// The delays of a call seeded with `seed`, endlessly (limits are the caller's job).
    #[cfg(test)]
    pub(crate) fn delays(&self, seed: u64) -> impl Iterator<Item = Duration> + '_ {
        let mut backoff = self.start(seed);
        std::iter::repeat_with(move || backoff.next_delay(self))
    }
}

/// The delays of one call, in order: where it is in the schedule and its random source.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Backoff {
    /// SplitMix64 state: seeding is free and a draw is a few instructions, which matters on the
    /// retry path; jitter needs spread, not cryptographic strength.
    rng: u64,
    /// The previous delay, for decorrelated jitter.
    previous_ns: u64,
    retries: u32,
}

impl Backoff {
    /// The last delay (the schedule's initial delay before the first).
    pub(crate) fn previous(&self) -> Duration {
        Duration::from_nanos(self.previous_ns)
    }

    /// Replaces the last delay by the one actually taken (a `retry_after` hint).
    pub(crate) fn set_previous(&mut self, delay: Duration) {
        self.previous_ns = as_nanos(delay);
    }

    /// Delays drawn so far (0: not started).
    pub(crate) fn retries(&self) -> u32 {
        self.retries
    }

    /// The next delay of `schedule` (never above its cap).
    // Always inlined: called once, by the core's decision.
    #[inline(always)]
    pub(crate) fn next_delay(&mut self, schedule: &BackoffSchedule) -> Duration {
        let (base, cap) = (schedule.initial, schedule.cap);
        let d = schedule.nominal.get(self.retries as usize).copied().unwrap_or(cap);
        self.retries = self.retries.saturating_add(1);
        let delay = match schedule.jitter {
            Jitter::None => d,
            Jitter::Full => self.uniform(Duration::ZERO, d),
            Jitter::Equal => self.uniform(d / 2, d),
            Jitter::Decorrelated => {
                let hi = Duration::from_nanos(self.previous_ns).saturating_mul(3).min(cap).max(base);
                self.uniform(base, hi)
            }
            Jitter::Proportional => {
                let f = schedule.randomization_factor;
                let lo = d.mul_f64(1.0 - f);
                let hi = d.mul_f64(1.0 + f).min(cap);
                self.uniform(lo.min(hi), hi)
            }
        };
        self.previous_ns = as_nanos(delay);
        delay
    }

    /// Uniform in `[lo, hi]`, at nanosecond resolution (multiply-shift: a bias below 2^-64 per
    /// nanosecond, far under any timer's resolution).
    fn uniform(&mut self, lo: Duration, hi: Duration) -> Duration {
        let (lo_ns, hi_ns) = (as_nanos(lo), as_nanos(hi));
        let span = u128::from(hi_ns - lo_ns) + 1;
        let offset = (u128::from(self.next_u64()) * span) >> 64;
        Duration::from_nanos(lo_ns + offset as u64)
    }

    /// SplitMix64 (Steele, Lea and Flood 2014), the generator `rand` itself uses to seed.
    fn next_u64(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn as_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_jitter_is_spelled_as_the_config_reads_it() {
        for jitter in [Jitter::Full, Jitter::Equal, Jitter::Decorrelated, Jitter::Proportional, Jitter::None]
        {
            let read: Jitter = serde_json::from_value(serde_json::Value::from(jitter.as_str())).unwrap();
            assert_eq!(read, jitter);
        }
    }

    #[test]
    fn a_uniform_draw_reaches_both_ends_of_its_range() {
        let mut b = Backoff::default();
        let one = Duration::from_nanos(1);
        let draws: Vec<_> = (0..64).map(|_| b.uniform(Duration::ZERO, one)).collect();
        assert!(draws.contains(&Duration::ZERO) && draws.contains(&one), "{draws:?}");
        // An empty range is its one value.
        assert_eq!(b.uniform(MS, MS), MS);
    }

    #[test]
    fn proportional_jitter_spreads_both_ways_around_the_schedule() {
        let first: Vec<_> =
            (0..100).filter_map(|seed| schedule(Jitter::Proportional).delays(seed).next()).collect();
        assert!(first.iter().any(|d| *d < MS * 10) && first.iter().any(|d| *d > MS * 10), "{first:?}");
    }

    #[test]
    fn the_generator_is_splitmix64() {
        // The reference outputs from state 0 (Steele, Lea and Flood's SplitMix64).
        let mut b = Backoff::default();
        let got = [b.next_u64(), b.next_u64(), b.next_u64()];
        assert_eq!(got, [0xE220_A839_7B1D_CDAF, 0x6E78_9E6A_A1B9_65F4, 0x06C4_5D18_8009_454F]);
    }

    #[test]
    fn decorrelated_jitter_grows_from_the_delay_actually_taken() {
        // The first draw is at most 3 × 10 ms, so the second at most 3 × 30 ms; after a 300 ms
        // wait instead (a `retry_after` hint) it may reach 3 × 300 ms.
        let schedule = schedule(Jitter::Decorrelated);
        let draws = |taken: Option<Duration>| -> Vec<Duration> {
            (0..50)
                .map(|seed| {
                    let mut b = schedule.start(seed);
                    b.next_delay(&schedule);
                    if let Some(taken) = taken {
                        b.set_previous(taken);
                    }
                    b.next_delay(&schedule)
                })
                .collect()
        };
        let own = draws(None);
        assert!(own.iter().all(|d| *d <= MS * 90), "{own:?}");
        let hinted = draws(Some(MS * 300));
        assert!(hinted.iter().all(|d| *d <= MS * 900) && hinted.iter().any(|d| *d > MS * 90), "{hinted:?}");
    }

    const MS: Duration = Duration::from_millis(1);

    fn nominal(n: u32) -> Duration {
        (MS * 10 * 2u32.pow(n.min(20))).min(MS * 1000)
    }

    fn schedule(jitter: Jitter) -> BackoffSchedule {
        BackoffSchedule::new(MS * 10, MS * 1000, 2.0, jitter, 0.5)
    }

    #[test]
    fn the_schedule_is_capped() {
        let schedule = BackoffSchedule::new(MS * 100, MS * 350, 2.0, Jitter::None, 0.0);
        let delays: Vec<_> = schedule.delays(7).take(4).collect();
        assert_eq!(delays, [MS * 100, MS * 200, MS * 350, MS * 350]);
    }

    #[test]
    fn none_is_exactly_the_schedule() {
        let got: Vec<_> = schedule(Jitter::None).delays(1).take(10).collect();
        let want: Vec<_> = (0..10).map(nominal).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn every_kind_stays_in_its_bounds() {
        for seed in 0..200 {
            for jitter in [Jitter::Full, Jitter::Equal, Jitter::Proportional, Jitter::Decorrelated] {
                let schedule = schedule(jitter);
                let mut b = schedule.delays(seed);
                let mut prev = MS * 10;
                for n in 0..12 {
                    let d = b.next().unwrap();
                    let nom = nominal(n);
                    let (lo, hi) = match jitter {
                        Jitter::Full => (Duration::ZERO, nom),
                        Jitter::Equal => (nom / 2, nom),
                        Jitter::Proportional => (nom / 2, (nom * 3 / 2).min(MS * 1000)),
                        Jitter::Decorrelated => (MS * 10, (prev * 3).min(MS * 1000)),
                        Jitter::None => unreachable!(),
                    };
                    assert!(d >= lo && d <= hi, "{jitter:?} n={n}: {d:?} not in [{lo:?}, {hi:?}]");
                    prev = d;
                }
            }
        }
    }

    #[test]
    fn seeded_runs_repeat_and_seeds_differ() {
        let a: Vec<_> = schedule(Jitter::Full).delays(42).take(8).collect();
        let b: Vec<_> = schedule(Jitter::Full).delays(42).take(8).collect();
        let c: Vec<_> = schedule(Jitter::Full).delays(43).take(8).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn full_jitter_spreads_over_the_whole_range() {
        // Mean of uniform [0, d] is d/2; 4000 draws land within 5% of it.
        let schedule = BackoffSchedule::new(MS * 100, MS * 100, 2.0, Jitter::Full, 0.5);
        let total: Duration = schedule.delays(9).take(4000).sum();
        let mean = total / 4000;
        assert!(mean > MS * 47 && mean < MS * 53, "{mean:?}");
    }
}
