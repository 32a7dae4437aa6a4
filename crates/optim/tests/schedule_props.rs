//! Property tests for schedules: bounds, continuity of `join` where pieces
//! meet, and warmups that reach their peak exactly at the boundary.

use bigbatch_optim::schedule::{
    CosineDecay, CosineRestarts, CosineWarmup, Exponential, Linear, Piecewise, Polynomial,
    Schedule, Triangular, join, warmup_cosine_decay,
};
use proptest::prelude::*;

fn within(v: f64, a: f64, b: f64) -> bool {
    let (lo, hi) = (a.min(b), a.max(b));
    let slack = 1e-12 * (1.0 + lo.abs().max(hi.abs()));
    v.is_finite() && v >= lo - slack && v <= hi + slack
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn ramps_and_decays_stay_within_their_ends(
        a in -10.0f64..10.0, b in -10.0f64..10.0, steps in 1u64..10_000,
        power in 0.1f64..5.0, t in 0u64..20_000,
    ) {
        prop_assert!(within(Linear::new(a, b, steps).unwrap().at(t), a, b));
        prop_assert!(within(CosineWarmup::new(a, b, steps).unwrap().at(t), a, b));
        prop_assert!(within(Polynomial::new(a, b, power, steps).unwrap().at(t), a, b));
        prop_assert!(within(CosineDecay::new(a, b, steps).unwrap().at(t), a, b));
        prop_assert!(within(Triangular::new(a, b, steps + 1).unwrap().at(t), a, b));
        prop_assert!(within(CosineRestarts::new(a, b, steps, 1 + steps % 3).unwrap().at(t), a, b));
    }

    #[test]
    fn exponential_and_piecewise_stay_within_bounds(
        init in 0.01f64..10.0, rate in 0.01f64..0.99, transition in 1u64..1000,
        end in 0.0f64..0.01, t in 0u64..100_000, staircase: bool,
        values in prop::collection::vec(-5.0f64..5.0, 1..6),
    ) {
        prop_assert!(within(Exponential::new(init, rate, transition, staircase, Some(end)).unwrap().at(t), end, init));
        let boundaries: Vec<u64> = (1..values.len() as u64).map(|i| i * transition).collect();
        let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        prop_assert!(within(Piecewise::new(values, boundaries).unwrap().at(t), lo, hi));
    }

    #[test]
    fn warmups_reach_the_peak_exactly_at_the_boundary(
        init in 0.0f64..1.0, peak in 1.0f64..100.0, warmup in 1u64..100_000,
    ) {
        let linear = Linear::new(init, peak, warmup).unwrap();
        let cosine = CosineWarmup::new(init, peak, warmup).unwrap();
        prop_assert_eq!(linear.at(warmup), peak);
        prop_assert_eq!(cosine.at(warmup), peak);
        prop_assert!(linear.at(warmup - 1) < peak);
        prop_assert!(cosine.at(warmup - 1) < peak);
        prop_assert_eq!(linear.at(0), init);
    }

    #[test]
    fn join_is_continuous_where_pieces_meet(
        init in 0.0f64..1.0, peak in 1.0f64..10.0, end in 0.0f64..1.0,
        warmup in 1u64..5000, decay in 1u64..5000, hold in 1u64..5000, power in 0.5f64..3.0,
    ) {
        // warmup → cosine decay → polynomial tail: each piece starts where the last ends.
        let s = join(
            vec![
                Box::new(Linear::new(init, peak, warmup).unwrap()),
                Box::new(CosineDecay::new(peak, end, decay).unwrap()),
                Box::new(Polynomial::new(end, end / 2.0, power, hold).unwrap()),
            ],
            vec![warmup, warmup + decay],
        ).unwrap();
        for (b, left) in [(warmup, peak), (warmup + decay, end)] {
            // The value at the boundary is the left piece's end value ...
            prop_assert_eq!(s.at(b), left);
            // ... and one step either side moves by at most one step's slope.
            let slope = (peak - init).abs() / warmup as f64
                + std::f64::consts::PI * (peak - end).abs() / (2.0 * decay as f64)
                + power * end / (2.0 * hold as f64);
            prop_assert!((s.at(b) - s.at(b - 1)).abs() <= slope + 1e-12);
            prop_assert!((s.at(b + 1) - s.at(b)).abs() <= slope + 1e-12);
        }
        let w = warmup_cosine_decay(init, peak, warmup, warmup + decay, end).unwrap();
        prop_assert_eq!(w.at(warmup), peak);
        prop_assert_eq!(w.at(warmup + decay), end);
    }
}
