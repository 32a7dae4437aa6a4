//! Building optimizers and schedules from their specs ([`OptimizerSpec`],
//! [`ScheduleSpec`]): the one way a training loop makes an optimizer.
//!
//! | spec | chain |
//! |---|---|
//! | `clip_global_norm` | [`crate::clip_by_global_norm`] first, on the raw gradient |
//! | `weight_decay` (L2 methods) | [`crate::add_decayed_weights`], masked, before the method |
//! | `name` | the named optimizer's chain ([`crate::sgd`] … [`crate::lamb`]) |
//! | `trust_ratio` (other than LARS/LAMB) | [`crate::layerwise`]: LAMB's ratio on the method's direction, masked, bounded |
//!
//! Every chain built here fuses: on f32 CPU parameters, [`Optimizer::new`]
//! runs it in place (see [`crate::Plan`]), equal to the composed chain.

use std::sync::Arc;

use bigbatch_spec::{Decay, Horizon, MaskSpec, Method, OptimizerSpec, ScheduleSpec};

use crate::mask::{Mask, masked};
use crate::schedule::{
    CosineDecay, CosineRestarts, Linear, Piecewise, Polynomial, Triangular, join,
};
use crate::{
    AdagradConfig, AdamConfig, Boxed, LambConfig, LarsConfig, Layerwise, Optimizer, Params, Result,
    RmsConfig, Schedule, Transform, TrustRatioConfig, adagrad, adam, add_decayed_weights, boxed,
    chain, clip_by_global_norm, layerwise, momentum, nesterov, rmsprop, sgd,
};

/// Builds an [`OptimizerSpec`] into an [`Optimizer`].
pub trait BuildOptimizer {
    /// The optimizer for `params`, its learning rate following `schedule`
    /// (from the spec's peak) over `horizon`.
    ///
    /// ```
    /// use bigbatch_optim::{BuildOptimizer, Params};
    /// use bigbatch_spec::{Horizon, Method, OptimizerSpec, ScheduleSpec};
    /// use candle_core::{Device, Var};
    /// # fn main() -> Result<(), bigbatch_optim::Error> {
    /// let w = Var::new(&[3f32, -1.], &Device::Cpu)?;
    /// let params = Params::new([("w".to_string(), w.clone())]);
    /// let spec: OptimizerSpec = serde_json::from_str(
    ///     r#"{"name": "rmsprop", "learning_rate": 0.1, "trust_ratio": {"bounds": [0.01, 10]}}"#,
    /// ).unwrap();
    /// let horizon = Horizon { total_steps: 50, steps_per_epoch: 10 };
    /// let mut opt = spec.build(&params, &ScheduleSpec::default(), &horizon)?;
    /// for _ in 0..50 {
    ///     let loss = w.as_tensor().sqr()?.sum_all()?;
    ///     opt.step(&params, params.grads(&loss.backward()?)?)?;
    /// }
    /// assert!(w.as_tensor().sqr()?.sum_all()?.to_scalar::<f32>()? < 10.0);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`crate::Error::Spec`] naming the field for an out-of-range value or a mask
    /// pattern that matches no parameter; candle errors allocating state.
    fn build(
        &self,
        params: &Params,
        schedule: &ScheduleSpec,
        horizon: &Horizon,
    ) -> Result<Optimizer>;

    /// The chain [`BuildOptimizer::build`] runs (fused, in place, on f32 CPU
    /// parameters), as one boxed [`Transform`].
    ///
    /// # Errors
    /// As [`BuildOptimizer::build`].
    fn chain(&self, params: &Params, schedule: &ScheduleSpec, horizon: &Horizon) -> Result<Boxed>;
}

impl BuildOptimizer for OptimizerSpec {
    fn build(
        &self,
        params: &Params,
        schedule: &ScheduleSpec,
        horizon: &Horizon,
    ) -> Result<Optimizer> {
        self.validate()?;
        let lr: Arc<dyn Schedule> = Arc::from(schedule.build(self.learning_rate, horizon)?);
        let masks = Masks::resolve(self, params)?;
        Optimizer::new(composed(self, &masks, lr), params)
    }

    fn chain(&self, params: &Params, schedule: &ScheduleSpec, horizon: &Horizon) -> Result<Boxed> {
        self.validate()?;
        let lr: Arc<dyn Schedule> = Arc::from(schedule.build(self.learning_rate, horizon)?);
        let masks = Masks::resolve(self, params)?;
        Ok(composed(self, &masks, lr))
    }
}

/// Builds a [`ScheduleSpec`] into a [`Schedule`] of learning rates.
pub trait BuildSchedule {
    /// The schedule from a peak `peak` over `horizon`: linear warmup from 0,
    /// then the decay, restarted from its own step 0 ([`join`]).
    ///
    /// ```
    /// use bigbatch_optim::BuildSchedule;
    /// use bigbatch_spec::{Decay, Horizon, Length, ScheduleSpec};
    /// # fn main() -> Result<(), bigbatch_optim::Error> {
    /// let spec = ScheduleSpec::new(Some(Length::Steps(10)), Decay::Polynomial { power: 2.0, final_fraction: 0.0, length: None });
    /// let s = spec.build(1.0, &Horizon { total_steps: 110, steps_per_epoch: 10 })?;
    /// assert_eq!([s.at(0), s.at(5), s.at(10), s.at(60), s.at(110)], [0.0, 0.5, 1.0, 0.25, 0.0]);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`crate::Error::Spec`] naming the field for out-of-range values or lengths
    /// that do not fit the run (a warmup as long as the run, a piecewise
    /// boundary inside the warmup).
    fn build(&self, peak: f64, horizon: &Horizon) -> Result<Box<dyn Schedule>>;
}

impl BuildSchedule for ScheduleSpec {
    fn build(&self, peak: f64, horizon: &Horizon) -> Result<Box<dyn Schedule>> {
        self.validate(horizon)?;
        let warmup = self.warmup_steps(horizon)?;
        let steps = self.decay_steps(horizon)?;
        let decay: Box<dyn Schedule> = match &self.decay {
            Decay::Constant => Box::new(peak),
            Decay::Linear { final_fraction, .. } => {
                Box::new(Polynomial::new(peak, final_fraction * peak, 1.0, steps)?)
            }
            Decay::Polynomial {
                power,
                final_fraction,
                ..
            } => Box::new(Polynomial::new(peak, final_fraction * peak, *power, steps)?),
            Decay::Cosine { final_fraction, .. } => {
                Box::new(CosineDecay::new(peak, final_fraction * peak, steps)?)
            }
            Decay::Piecewise { boundaries, values } => {
                // Boundaries count from the start of the run; the piece starts after the warmup.
                let mut after_warmup = Vec::with_capacity(boundaries.len());
                for b in boundaries {
                    let at = horizon.steps("schedule.decay.boundaries", *b)?;
                    if at <= warmup {
                        return Err(bigbatch_spec::Error::Inconsistent {
                            field: "schedule.decay.boundaries".into(),
                            problem: format!(
                                "boundary at step {at} is inside the {warmup}-step warmup"
                            ),
                        }
                        .into());
                    }
                    after_warmup.push(at - warmup);
                }
                let values = values.iter().map(|v| v * peak).collect();
                Box::new(Piecewise::new(values, after_warmup)?)
            }
            Decay::Cyclical {
                min_fraction,
                cycle,
            } => {
                let cycle = horizon.steps("schedule.decay.cycle", *cycle)?;
                Box::new(Triangular::new(min_fraction * peak, peak, cycle)?)
            }
            Decay::CosineRestarts {
                final_fraction,
                first_period,
                period_mult,
            } => {
                let first = horizon.steps("schedule.decay.first_period", *first_period)?;
                Box::new(CosineRestarts::new(
                    peak,
                    final_fraction * peak,
                    first,
                    *period_mult,
                )?)
            }
        };
        if warmup == 0 {
            return Ok(decay);
        }
        let ramp: Box<dyn Schedule> = Box::new(Linear::warmup(peak, warmup)?);
        Ok(Box::new(join(vec![ramp, decay], vec![warmup])?))
    }
}

/// The spec's masks, resolved against the parameters.
struct Masks {
    weight_decay: Mask,
    trust_ratio: Mask,
}

impl Masks {
    fn resolve(spec: &OptimizerSpec, params: &Params) -> Result<Self> {
        let resolve = |mask: &MaskSpec, field: &'static str| -> Result<Mask> {
            let names: Vec<&str> = params.iter().map(|(n, _)| n).collect();
            mask.check_patterns(field, names.iter().copied(), params.kinds_known())?;
            let selected: std::collections::BTreeSet<String> = params
                .iter()
                .filter(|(n, _)| mask.selects(n, params.kind(n)))
                .map(|(n, _)| n.to_owned())
                .collect();
            Ok(Mask::new(move |name, _| selected.contains(name)))
        };
        Ok(Self {
            weight_decay: resolve(&spec.weight_decay_mask, "weight_decay_mask")?,
            trust_ratio: resolve(&spec.trust_ratio_mask, "trust_ratio_mask")?,
        })
    }
}

/// The trust ratio a spec adds to a base method (LAMB's form, its bounds).
fn trust_ratio(spec: &OptimizerSpec) -> Option<TrustRatioConfig> {
    spec.trust_ratio.map(|t| TrustRatioConfig {
        eps: t.eps,
        ..bounded(TrustRatioConfig::lamb(), t.bounds)
    })
}

fn bounded(cfg: TrustRatioConfig, bounds: Option<[f64; 2]>) -> TrustRatioConfig {
    match bounds {
        // A lower bound of 0 is no bound: ratios are never negative.
        Some([lo, hi]) => cfg.with_bounds((lo > 0.0).then_some(lo), Some(hi)),
        None => cfg,
    }
}

fn lars_config(
    spec: &OptimizerSpec,
    masks: &Masks,
    momentum: f64,
    nesterov: bool,
    eta: f64,
    eps: f64,
) -> LarsConfig {
    let (min_ratio, max_ratio) = match spec.trust_ratio.and_then(|t| t.bounds) {
        Some([lo, hi]) => ((lo > 0.0).then_some(lo), Some(hi)),
        None => (None, None),
    };
    LarsConfig {
        momentum,
        nesterov,
        weight_decay: spec.weight_decay,
        eta,
        eps: eps + spec.trust_ratio.map_or(0.0, |t| t.eps),
        min_ratio,
        max_ratio,
        weight_decay_mask: masks.weight_decay.clone(),
        trust_ratio_mask: masks.trust_ratio.clone(),
    }
}

fn lamb_config(spec: &OptimizerSpec, masks: &Masks, b1: f64, b2: f64, eps: f64) -> LambConfig {
    let form = TrustRatioConfig {
        eps: spec.trust_ratio.map_or(0.0, |t| t.eps),
        ..bounded(
            TrustRatioConfig::lamb(),
            spec.trust_ratio.and_then(|t| t.bounds),
        )
    };
    LambConfig {
        adam: adam_config(b1, b2, eps),
        weight_decay: spec.weight_decay,
        weight_decay_mask: masks.weight_decay.clone(),
        trust_ratio: form,
        trust_ratio_mask: masks.trust_ratio.clone(),
    }
}

fn adam_config(b1: f64, b2: f64, eps: f64) -> AdamConfig {
    AdamConfig {
        b1,
        b2,
        eps,
        ..AdamConfig::default()
    }
}

/// The whole chain of a spec around a method's optimizer `core`: the
/// layer-wise trust ratio inserted before its learning rate, an L2 penalty
/// before it (`l2`, for the methods whose decay is not their own), a clip
/// first. Composed statically and boxed once, so that it fuses as one chain.
fn finish<T>(core: T, spec: &OptimizerSpec, masks: &Masks, l2: bool) -> Boxed
where
    T: Layerwise + Transform + 'static,
    T::Output: 'static,
{
    match trust_ratio(spec) {
        None => with_l2(core, spec, masks, l2),
        Some(cfg) => {
            let core = layerwise(core, cfg, masks.trust_ratio.clone());
            with_l2(core, spec, masks, l2)
        }
    }
}

/// `core` after the spec's (masked) L2 penalty, if `l2` and it has one.
fn with_l2<T: Transform + 'static>(
    core: T,
    spec: &OptimizerSpec,
    masks: &Masks,
    l2: bool,
) -> Boxed {
    if !l2 || spec.weight_decay == 0.0 {
        return with_clip(core, spec);
    }
    let decay = masked(
        add_decayed_weights(spec.weight_decay),
        masks.weight_decay.clone(),
    );
    with_clip(chain((decay, core)), spec)
}

/// `core` after the spec's global-norm clip, if it has one.
fn with_clip<T: Transform + 'static>(core: T, spec: &OptimizerSpec) -> Boxed {
    match spec.clip_global_norm {
        Some(max_norm) => boxed(chain((clip_by_global_norm(max_norm), core))),
        None => boxed(core),
    }
}

/// The composed chain of any spec (see the module table).
fn composed(spec: &OptimizerSpec, masks: &Masks, lr: Arc<dyn Schedule>) -> Boxed {
    match spec.method {
        Method::Sgd => finish(sgd(lr), spec, masks, true),
        Method::Momentum { momentum: mu } => finish(momentum(lr, mu), spec, masks, true),
        Method::Nesterov { momentum: mu } => finish(nesterov(lr, mu), spec, masks, true),
        Method::Adagrad {
            initial_accumulator_value,
            eps,
        } => {
            let cfg = AdagradConfig {
                initial_accumulator_value,
                eps,
            };
            finish(adagrad(lr, cfg), spec, masks, true)
        }
        Method::Rmsprop {
            decay,
            eps,
            momentum,
            centered,
        } => {
            let cfg = RmsConfig {
                decay,
                eps,
                centered,
                ..RmsConfig::default()
            };
            finish(rmsprop(lr, cfg, momentum), spec, masks, true)
        }
        Method::Adam { b1, b2, eps } => {
            finish(adam(lr, adam_config(b1, b2, eps)), spec, masks, true)
        }
        Method::Adamw { b1, b2, eps } => {
            let adamw = crate::adamw(
                lr,
                adam_config(b1, b2, eps),
                spec.weight_decay,
                masks.weight_decay.clone(),
            );
            finish(adamw, spec, masks, false)
        }
        Method::Lars {
            momentum,
            nesterov,
            eta,
            eps,
        } => {
            let cfg = lars_config(spec, masks, momentum, nesterov, eta, eps);
            with_clip(crate::lars(lr, cfg), spec)
        }
        Method::Lamb { b1, b2, eps } => {
            with_clip(crate::lamb(lr, lamb_config(spec, masks, b1, b2, eps)), spec)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use bigbatch_spec::Length;

    fn at(spec: &ScheduleSpec, total: u64, steps: &[u64]) -> Vec<f64> {
        let s = spec
            .build(
                2.0,
                &Horizon {
                    total_steps: total,
                    steps_per_epoch: 10,
                },
            )
            .expect("valid schedule");
        steps.iter().map(|&t| s.at(t)).collect()
    }

    fn close(a: &[f64], b: &[f64]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-12, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn schedules_match_their_closed_forms() {
        use std::f64::consts::PI;
        let warm = Some(Length::Epochs(2.0)); // 20 steps
        // Warmup + polynomial (You et al.): 2·(1 − (t − 20)/80)², 0 at the end.
        let poly = ScheduleSpec::new(
            warm,
            Decay::Polynomial {
                power: 2.0,
                final_fraction: 0.0,
                length: None,
            },
        );
        close(
            &at(&poly, 100, &[0, 10, 20, 60, 100]),
            &[0.0, 1.0, 2.0, 2.0 * 0.25, 0.0],
        );
        // Cosine to 10%: 0.2 + 1.8·(1 + cos(π t/100))/2.
        let cos = ScheduleSpec::new(
            None,
            Decay::Cosine {
                final_fraction: 0.1,
                length: None,
            },
        );
        let want: Vec<f64> = [0u64, 25, 50, 100]
            .iter()
            .map(|&t| 0.2 + 1.8 * (1.0 + (PI * t as f64 / 100.0).cos()) / 2.0)
            .collect();
        close(&at(&cos, 100, &[0, 25, 50, 100]), &want);
        // Triangular between 0.2 and 2 with a 40-step cycle.
        let cyc = ScheduleSpec::new(
            None,
            Decay::Cyclical {
                min_fraction: 0.1,
                cycle: Length::Steps(40),
            },
        );
        close(
            &at(&cyc, 100, &[0, 10, 20, 30, 40, 60]),
            &[0.2, 1.1, 2.0, 1.1, 0.2, 2.0],
        );
        // Restarts after 10, then 20 steps (m = 2), cosine to 0 within each.
        let sgdr = ScheduleSpec::new(
            None,
            Decay::CosineRestarts {
                final_fraction: 0.0,
                first_period: Length::Steps(10),
                period_mult: 2,
            },
        );
        close(
            &at(&sgdr, 100, &[0, 5, 10, 20, 30]),
            &[2.0, 1.0, 2.0, 1.0, 2.0],
        );
        // Piecewise (Goyal et al.): boundaries from the start of the run, after a warmup.
        let steps = ScheduleSpec::new(
            warm,
            Decay::Piecewise {
                boundaries: vec![Length::Steps(50), Length::Epochs(8.0)],
                values: vec![1.0, 0.1, 0.01],
            },
        );
        close(
            &at(&steps, 100, &[19, 20, 49, 50, 79, 80]),
            &[1.9, 2.0, 2.0, 0.2, 0.2, 0.02],
        );
        // Shallue's linear decay over the first 40% of the run, to 1%.
        let lin = ScheduleSpec::new(
            None,
            Decay::Linear {
                final_fraction: 0.01,
                length: Some(Length::Fraction(0.4)),
            },
        );
        close(&at(&lin, 100, &[0, 20, 40, 90]), &[2.0, 1.01, 0.02, 0.02]);
    }

    #[test]
    fn epoch_lengths_mean_the_same_data_at_every_batch_size() {
        // 6,000 examples: 5 epochs of warmup are 30 steps at batch 1,000 and 300 at batch 100.
        let spec = ScheduleSpec::new(Some(Length::Epochs(5.0)), Decay::Constant);
        for (batch, warmup) in [(1000u64, 30u64), (100, 300)] {
            let per_epoch = 6000 / batch;
            let h = Horizon {
                total_steps: 20 * per_epoch,
                steps_per_epoch: per_epoch,
            };
            let s = spec.build(1.0, &h).expect("valid");
            assert!(
                s.at(warmup - 1) < 1.0 && s.at(warmup) == 1.0,
                "batch {batch}"
            );
        }
    }

    #[test]
    fn a_boundary_inside_the_warmup_is_refused() {
        let spec = ScheduleSpec::new(
            Some(Length::Steps(30)),
            Decay::Piecewise {
                boundaries: vec![Length::Steps(20)],
                values: vec![1.0, 0.1],
            },
        );
        let err = spec.build(
            1.0,
            &Horizon {
                total_steps: 100,
                steps_per_epoch: 10,
            },
        );
        assert!(matches!(
            err,
            Err(Error::Spec(bigbatch_spec::Error::Inconsistent { .. }))
        ));
    }
}
