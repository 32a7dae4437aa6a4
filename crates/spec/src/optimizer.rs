//! [`OptimizerSpec`]: an optimizer as a user writes it, by paper name.
//!
//! One flat table, tagged by `name`; every field but `name` has a default:
//!
//! ```toml
//! name = "lamb"
//! learning_rate = 0.01
//! weight_decay = 0.01
//! weight_decay_mask = { exclude_kinds = ["bias", "norm-scale", "norm-shift"] }
//! trust_ratio = { bounds = [0.01, 10.0] }
//! clip_global_norm = 1.0
//! ```
//!
//! | `name` | hyperparameters (defaults) | `weight_decay` is | reference |
//! |---|---|---|---|
//! | `sgd` | | L2, added to the gradient | Robbins & Monro 1951 |
//! | `momentum` | `momentum` (0.9) | L2 | Polyak 1964, PyTorch `SGD` |
//! | `nesterov` | `momentum` (0.9) | L2 | Sutskever et al. 2013 |
//! | `adagrad` | `initial_accumulator_value` (0), `eps` (1e-10) | L2 | Duchi et al. 2011 |
//! | `rmsprop` | `decay` (0.99), `eps` (1e-8), `momentum` (0), `centered` (false) | L2 | Tieleman & Hinton 2012 |
//! | `adam` | `b1` (0.9), `b2` (0.999), `eps` (1e-8) | L2 | Kingma & Ba 2015 |
//! | `adamw` | `b1`, `b2`, `eps` as Adam | decoupled, `η(t)·λw` | Loshchilov & Hutter 2019 |
//! | `lars` | `momentum` (0.9), `nesterov` (false), `eta` (0.001), `eps` (0) | added to the gradient and to the ratio's denominator | You et al. 2017 |
//! | `lamb` | `b1` (0.9), `b2` (0.999), `eps` (1e-6) | decoupled, inside the trust ratio | You et al. 2020 |
//!
//! `trust_ratio` makes any of them layer-wise (You et al. 2020, Table 3): the
//! update of each parameter tensor is rescaled by `‖w‖/‖d‖`, `d` the
//! optimizer's direction, clipped to `bounds` if given ("+ layer-wise and
//! bound-ratio"). LARS and LAMB always have their own ratio; for them
//! `trust_ratio` only sets its bounds and `eps`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{ensure, non_negative, positive, unit};
use crate::{Error, MaskSpec, Result};

/// An optimizer and everything around it that a recipe sets: learning rate,
/// weight decay with its mask, a layer-wise trust ratio with bounds and its
/// mask, and global-norm gradient clipping.
///
/// ```
/// use bigbatch_spec::{Method, OptimizerSpec};
/// let spec: OptimizerSpec = serde_json::from_str(
///     r#"{"name": "rmsprop", "learning_rate": 0.001, "trust_ratio": {"bounds": [0.01, 10]}}"#,
/// ).unwrap();
/// assert_eq!(spec.method, Method::Rmsprop { decay: 0.99, eps: 1e-8, momentum: 0.0, centered: false });
/// assert_eq!(spec.trust_ratio.unwrap().bounds, Some([0.01, 10.0]));
/// let typo = serde_json::from_str::<OptimizerSpec>(r#"{"name": "adam", "beta2": 0.99}"#);
/// assert!(typo.unwrap_err().to_string().contains("`beta2` does not apply to adam"));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawOptimizer", into = "RawOptimizer")]
pub struct OptimizerSpec {
    /// The update rule and its own hyperparameters.
    pub method: Method,
    /// The peak learning rate `η₀` (the schedule multiplies it).
    pub learning_rate: f64,
    /// Weight decay `λ`, in the form the method defines (module table).
    pub weight_decay: f64,
    /// Which parameters decay.
    pub weight_decay_mask: MaskSpec,
    /// A layer-wise trust ratio, with optional bounds.
    pub trust_ratio: Option<TrustRatioSpec>,
    /// Which parameters get the trust ratio (the others use the plain rate).
    pub trust_ratio_mask: MaskSpec,
    /// Rescale the gradient to at most this global norm before anything else
    /// (Pascanu et al. 2013).
    pub clip_global_norm: Option<f64>,
}

/// A layer-wise trust ratio's options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustRatioSpec {
    /// `[lower, upper]` bounds on the ratio (`lower = 0`: no lower bound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounds: Option<[f64; 2]>,
    /// Added to the ratio's denominator (0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub eps: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// An update rule by paper name, with its own hyperparameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    /// `w ← w − η·g`.
    Sgd,
    /// Heavy ball, PyTorch's convention: `m ← g + μm`, `w ← w − η·m`.
    Momentum {
        /// `μ ∈ [0, 1)`.
        momentum: f64,
    },
    /// Nesterov: `m ← g + μm`, `w ← w − η·(g + μm)`.
    Nesterov {
        /// `μ ∈ [0, 1)`.
        momentum: f64,
    },
    /// AdaGrad: `s ← s + g²`, `w ← w − η·g/(√s + ε)`.
    Adagrad {
        /// `s₀ ≥ 0`.
        initial_accumulator_value: f64,
        /// `ε ≥ 0`.
        eps: f64,
    },
    /// RMSprop, PyTorch's form (`ε` outside the root).
    Rmsprop {
        /// `α ∈ [0, 1)`, the squared-gradient average's decay.
        decay: f64,
        /// `ε ≥ 0`.
        eps: f64,
        /// `μ ∈ [0, 1)`.
        momentum: f64,
        /// Divide by the standard deviation (Graves 2013).
        centered: bool,
    },
    /// Adam with bias correction.
    Adam {
        /// `β₁ ∈ [0, 1)`.
        b1: f64,
        /// `β₂ ∈ [0, 1)`.
        b2: f64,
        /// `ε ≥ 0`, outside the root.
        eps: f64,
    },
    /// Adam with decoupled weight decay.
    Adamw {
        /// `β₁ ∈ [0, 1)`.
        b1: f64,
        /// `β₂ ∈ [0, 1)`.
        b2: f64,
        /// `ε ≥ 0`.
        eps: f64,
    },
    /// LARS: `r = η_t‖w‖/(‖g‖ + λ‖w‖ + ε)`, then momentum on `η·r·(g + λw)`.
    Lars {
        /// `μ ∈ [0, 1)`.
        momentum: f64,
        /// Nesterov's form of the momentum.
        nesterov: bool,
        /// The trust coefficient `η_t > 0`.
        eta: f64,
        /// `ε ≥ 0` in the ratio's denominator.
        eps: f64,
    },
    /// LAMB: Adam's direction plus decoupled decay, times `‖w‖/‖u‖`.
    Lamb {
        /// `β₁ ∈ [0, 1)`.
        b1: f64,
        /// `β₂ ∈ [0, 1)`.
        b2: f64,
        /// `ε ≥ 0`.
        eps: f64,
    },
}

/// A hyperparameter's value: a number or a flag.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// On or off.
    Flag(bool),
    /// A number.
    Number(f64),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Flag(b) => write!(f, "{b}"),
            Value::Number(x) => write!(f, "{x}"),
        }
    }
}

impl Method {
    /// Every optimizer's name, as written in a spec.
    pub const NAMES: [&'static str; 9] = [
        "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw", "lars", "lamb",
    ];

    /// The optimizer `name` with its default hyperparameters.
    ///
    /// # Errors
    /// [`Error::UnknownName`] listing the valid names.
    pub fn named(name: &str) -> Result<Self> {
        Ok(match name {
            "sgd" => Method::Sgd,
            "momentum" => Method::Momentum { momentum: 0.9 },
            "nesterov" => Method::Nesterov { momentum: 0.9 },
            "adagrad" => Method::Adagrad {
                initial_accumulator_value: 0.0,
                eps: 1e-10,
            },
            "rmsprop" => Method::Rmsprop {
                decay: 0.99,
                eps: 1e-8,
                momentum: 0.0,
                centered: false,
            },
            "adam" => Method::Adam {
                b1: 0.9,
                b2: 0.999,
                eps: 1e-8,
            },
            "adamw" => Method::Adamw {
                b1: 0.9,
                b2: 0.999,
                eps: 1e-8,
            },
            "lars" => Method::Lars {
                momentum: 0.9,
                nesterov: false,
                eta: 0.001,
                eps: 0.0,
            },
            "lamb" => Method::Lamb {
                b1: 0.9,
                b2: 0.999,
                eps: 1e-6,
            },
            _ => {
                return Err(Error::UnknownName {
                    what: "optimizer",
                    name: name.to_owned(),
                    valid: Self::NAMES.join(", "),
                });
            }
        })
    }

    /// The name as written in a spec.
    pub fn name(&self) -> &'static str {
        match self {
            Method::Sgd => "sgd",
            Method::Momentum { .. } => "momentum",
            Method::Nesterov { .. } => "nesterov",
            Method::Adagrad { .. } => "adagrad",
            Method::Rmsprop { .. } => "rmsprop",
            Method::Adam { .. } => "adam",
            Method::Adamw { .. } => "adamw",
            Method::Lars { .. } => "lars",
            Method::Lamb { .. } => "lamb",
        }
    }

    /// A learning rate that trains small networks from the defaults
    /// (PyTorch's and Keras's defaults where they have one).
    pub fn default_learning_rate(&self) -> f64 {
        match self {
            Method::Sgd | Method::Momentum { .. } | Method::Nesterov { .. } => 0.01,
            Method::Adagrad { .. } | Method::Rmsprop { .. } => 0.01,
            Method::Adam { .. } | Method::Adamw { .. } | Method::Lamb { .. } => 0.001,
            Method::Lars { .. } => 1.0,
        }
    }

    /// The method's own hyperparameters with their current values, in the
    /// order of the module table.
    pub fn hyperparameters(&self) -> Vec<(&'static str, Value)> {
        use Value::{Flag, Number as N};
        match *self {
            Method::Sgd => vec![],
            Method::Momentum { momentum } | Method::Nesterov { momentum } => {
                vec![("momentum", N(momentum))]
            }
            Method::Adagrad {
                initial_accumulator_value,
                eps,
            } => vec![
                ("initial_accumulator_value", N(initial_accumulator_value)),
                ("eps", N(eps)),
            ],
            Method::Rmsprop {
                decay,
                eps,
                momentum,
                centered,
            } => vec![
                ("decay", N(decay)),
                ("eps", N(eps)),
                ("momentum", N(momentum)),
                ("centered", Flag(centered)),
            ],
            Method::Adam { b1, b2, eps }
            | Method::Adamw { b1, b2, eps }
            | Method::Lamb { b1, b2, eps } => {
                vec![("b1", N(b1)), ("b2", N(b2)), ("eps", N(eps))]
            }
            Method::Lars {
                momentum,
                nesterov,
                eta,
                eps,
            } => vec![
                ("momentum", N(momentum)),
                ("nesterov", Flag(nesterov)),
                ("eta", N(eta)),
                ("eps", N(eps)),
            ],
        }
    }

    /// Sets the hyperparameter `field` to `value`.
    ///
    /// # Errors
    /// [`Error::NotApplicable`] if this method has no such hyperparameter (or
    /// it takes a flag and got a number, or the reverse).
    pub fn set(&mut self, field: &str, value: Value) -> Result<()> {
        let slot: Option<Slot<'_>> = match (self as &mut Method, field) {
            (
                Method::Momentum { momentum }
                | Method::Nesterov { momentum }
                | Method::Rmsprop { momentum, .. }
                | Method::Lars { momentum, .. },
                "momentum",
            ) => Some(Slot::Number(momentum)),
            (
                Method::Adagrad { eps, .. }
                | Method::Rmsprop { eps, .. }
                | Method::Adam { eps, .. }
                | Method::Adamw { eps, .. }
                | Method::Lars { eps, .. }
                | Method::Lamb { eps, .. },
                "eps",
            ) => Some(Slot::Number(eps)),
            (
                Method::Adagrad {
                    initial_accumulator_value,
                    ..
                },
                "initial_accumulator_value",
            ) => Some(Slot::Number(initial_accumulator_value)),
            (Method::Rmsprop { decay, .. }, "decay") => Some(Slot::Number(decay)),
            (Method::Rmsprop { centered, .. }, "centered") => Some(Slot::Flag(centered)),
            (
                Method::Adam { b1, .. } | Method::Adamw { b1, .. } | Method::Lamb { b1, .. },
                "b1",
            ) => Some(Slot::Number(b1)),
            (
                Method::Adam { b2, .. } | Method::Adamw { b2, .. } | Method::Lamb { b2, .. },
                "b2",
            ) => Some(Slot::Number(b2)),
            (Method::Lars { nesterov, .. }, "nesterov") => Some(Slot::Flag(nesterov)),
            (Method::Lars { eta, .. }, "eta") => Some(Slot::Number(eta)),
            _ => None,
        };
        match (slot, value) {
            (Some(Slot::Number(x)), Value::Number(v)) => *x = v,
            (Some(Slot::Flag(x)), Value::Flag(v)) => *x = v,
            _ => {
                let valid: Vec<&str> = ["learning_rate", "weight_decay"]
                    .into_iter()
                    .chain(self.hyperparameters().into_iter().map(|(n, _)| n))
                    .chain([
                        "weight_decay_mask",
                        "trust_ratio",
                        "trust_ratio_mask",
                        "clip_global_norm",
                    ])
                    .collect();
                return Err(Error::NotApplicable {
                    field: field.to_owned(),
                    owner: self.name().to_owned(),
                    valid: valid.join(", "),
                });
            }
        }
        Ok(())
    }

    /// Checks every hyperparameter against its range.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] naming the field as `optimizer.<field>`.
    pub fn validate(&self) -> Result<()> {
        for (field, value) in self.hyperparameters() {
            let Value::Number(v) = value else { continue };
            let path = format!("optimizer.{field}");
            match field {
                "momentum" | "b1" | "b2" | "decay" => unit(&path, v)?,
                "eta" => positive(&path, v)?,
                _ => non_negative(&path, v)?,
            }
        }
        if let Method::Adam { eps, .. } | Method::Adamw { eps, .. } | Method::Lamb { eps, .. } =
            *self
        {
            positive("optimizer.eps", eps)?;
        }
        Ok(())
    }

    /// One line on what the method is, with its reference.
    pub fn summary(&self) -> &'static str {
        match self {
            Method::Sgd => "plain SGD: w ← w − η·g (Robbins & Monro 1951)",
            Method::Momentum { .. } => "heavy-ball momentum: m ← g + μm, w ← w − η·m (Polyak 1964)",
            Method::Nesterov { .. } => {
                "Nesterov momentum: m ← g + μm, w ← w − η·(g + μm) (Sutskever et al. 2013)"
            }
            Method::Adagrad { .. } => {
                "AdaGrad: s ← s + g², w ← w − η·g/(√s + ε) (Duchi et al. 2011)"
            }
            Method::Rmsprop { .. } => {
                "RMSprop: v ← αv + (1 − α)g², w ← w − η·g/(√v + ε) (Tieleman & Hinton 2012)"
            }
            Method::Adam { .. } => "Adam with bias correction (Kingma & Ba 2015)",
            Method::Adamw { .. } => "Adam with decoupled weight decay (Loshchilov & Hutter 2019)",
            Method::Lars { .. } => {
                "LARS: layer-wise rate η_t‖w‖/(‖g‖ + λ‖w‖), then momentum (You et al. 2017)"
            }
            Method::Lamb { .. } => {
                "LAMB: Adam's direction times ‖w‖/‖u‖ per layer (You et al. 2020)"
            }
        }
    }

    /// How this method applies `weight_decay`.
    pub fn weight_decay_form(&self) -> &'static str {
        match self {
            Method::Adamw { .. } => "decoupled: η(t)·λw added to the update",
            Method::Lamb { .. } => "decoupled: λw added to the direction, inside the trust ratio",
            Method::Lars { .. } => "added to the gradient and to the ratio's denominator",
            _ => "L2: λw added to the gradient",
        }
    }
}

/// A mutable hyperparameter of a [`Method`].
enum Slot<'a> {
    Number(&'a mut f64),
    Flag(&'a mut bool),
}

impl OptimizerSpec {
    /// `method` with its default learning rate, no decay, no trust ratio, no clipping.
    pub fn new(method: Method) -> Self {
        Self {
            learning_rate: method.default_learning_rate(),
            method,
            weight_decay: 0.0,
            weight_decay_mask: MaskSpec::all(),
            trust_ratio: None,
            trust_ratio_mask: MaskSpec::all(),
            clip_global_norm: None,
        }
    }

    /// The same spec with learning rate `learning_rate`.
    pub fn with_learning_rate(self, learning_rate: f64) -> Self {
        Self {
            learning_rate,
            ..self
        }
    }

    /// Checks every number against its range.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] naming the field (`optimizer.learning_rate`, …).
    pub fn validate(&self) -> Result<()> {
        positive("optimizer.learning_rate", self.learning_rate)?;
        non_negative("optimizer.weight_decay", self.weight_decay)?;
        self.method.validate()?;
        if let Some(c) = self.clip_global_norm {
            positive("optimizer.clip_global_norm", c)?;
        }
        if let Some(t) = &self.trust_ratio {
            non_negative("optimizer.trust_ratio.eps", t.eps)?;
            if let Some([lo, hi]) = t.bounds {
                non_negative("optimizer.trust_ratio.bounds[0]", lo)?;
                positive("optimizer.trust_ratio.bounds[1]", hi)?;
                ensure(
                    lo <= hi,
                    "optimizer.trust_ratio.bounds[0]",
                    lo,
                    "at most the upper bound",
                )?;
            }
        }
        Ok(())
    }

    /// Whether the update includes a layer-wise trust ratio (LARS and LAMB
    /// always; the others with `trust_ratio`).
    pub fn is_layerwise(&self) -> bool {
        self.trust_ratio.is_some()
            || matches!(self.method, Method::Lars { .. } | Method::Lamb { .. })
    }
}

impl Default for OptimizerSpec {
    /// Momentum SGD (`μ = 0.9`) at learning rate 0.05: what `bigbatch train`
    /// uses when told nothing.
    fn default() -> Self {
        OptimizerSpec::new(Method::Momentum { momentum: 0.9 }).with_learning_rate(0.05)
    }
}

/// The serde shape of an [`OptimizerSpec`]: one flat table.
#[derive(Serialize, Deserialize)]
struct RawOptimizer {
    name: String,
    #[serde(default)]
    learning_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "is_zero")]
    weight_decay: f64,
    #[serde(default, skip_serializing_if = "MaskSpec::is_all")]
    weight_decay_mask: MaskSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trust_ratio: Option<TrustRatioSpec>,
    #[serde(default, skip_serializing_if = "MaskSpec::is_all")]
    trust_ratio_mask: MaskSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    clip_global_norm: Option<f64>,
    /// The method's own hyperparameters; anything the method does not take is an error.
    #[serde(flatten)]
    hyperparameters: BTreeMap<String, Value>,
}

impl TryFrom<RawOptimizer> for OptimizerSpec {
    type Error = Error;

    fn try_from(raw: RawOptimizer) -> Result<Self> {
        let mut method = Method::named(&raw.name)?;
        for (field, value) in raw.hyperparameters {
            method.set(&field, value)?;
        }
        Ok(Self {
            learning_rate: raw
                .learning_rate
                .unwrap_or_else(|| method.default_learning_rate()),
            method,
            weight_decay: raw.weight_decay,
            weight_decay_mask: raw.weight_decay_mask,
            trust_ratio: raw.trust_ratio,
            trust_ratio_mask: raw.trust_ratio_mask,
            clip_global_norm: raw.clip_global_norm,
        })
    }
}

impl From<OptimizerSpec> for RawOptimizer {
    fn from(spec: OptimizerSpec) -> Self {
        Self {
            name: spec.method.name().to_owned(),
            learning_rate: Some(spec.learning_rate),
            weight_decay: spec.weight_decay,
            weight_decay_mask: spec.weight_decay_mask,
            trust_ratio: spec.trust_ratio,
            trust_ratio_mask: spec.trust_ratio_mask,
            clip_global_norm: spec.clip_global_norm,
            hyperparameters: spec
                .method
                .hyperparameters()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_method_round_trips_its_name_and_validates() -> Result<()> {
        for name in Method::NAMES {
            let m = Method::named(name)?;
            assert_eq!(m.name(), name);
            m.validate()?;
            OptimizerSpec::new(m).validate()?;
        }
        Ok(())
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let err = Method::named("adamax").unwrap_err().to_string();
        assert!(
            err.contains("adamax") && err.contains("lamb") && err.contains("rmsprop"),
            "{err}"
        );
    }

    #[test]
    fn every_hyperparameter_can_be_set_and_read_back() -> Result<()> {
        for name in Method::NAMES {
            let mut m = Method::named(name)?;
            for (field, value) in m.hyperparameters() {
                let new = match value {
                    Value::Number(x) => Value::Number(x / 2.0 + 0.01),
                    Value::Flag(b) => Value::Flag(!b),
                };
                m.set(field, new)?;
                let back = m.hyperparameters().into_iter().find(|(f, _)| *f == field);
                assert_eq!(back, Some((field, new)), "{name}.{field}");
            }
            assert!(matches!(
                m.set("no_such_field", Value::Number(1.0)),
                Err(Error::NotApplicable { .. })
            ));
        }
        Ok(())
    }

    #[test]
    fn out_of_range_values_name_their_field() {
        let cases: [(&str, &str, f64); 6] = [
            ("adam", "b2", 1.0),
            ("momentum", "momentum", -0.1),
            ("rmsprop", "decay", f64::NAN),
            ("lars", "eta", 0.0),
            ("adagrad", "eps", f64::INFINITY),
            ("lamb", "b1", 1.5),
        ];
        for (name, field, v) in cases {
            let mut m = Method::named(name).unwrap_or(Method::Sgd);
            assert!(m.set(field, Value::Number(v)).is_ok());
            match m.validate() {
                Err(Error::OutOfRange { field: f, .. }) => {
                    assert_eq!(f, format!("optimizer.{field}"))
                }
                other => panic!("{name}.{field} = {v}: {other:?}"),
            }
        }
        let mut spec = OptimizerSpec::new(Method::Sgd);
        for (lr, ok) in [(-0.1, false), (0.0, false), (f64::NAN, false), (0.1, true)] {
            spec.learning_rate = lr;
            assert_eq!(spec.validate().is_ok(), ok, "lr {lr}");
        }
        spec.trust_ratio = Some(TrustRatioSpec {
            bounds: Some([10.0, 0.01]),
            eps: 0.0,
        });
        assert!(
            matches!(spec.validate(), Err(Error::OutOfRange { field, .. }) if field == "optimizer.trust_ratio.bounds[0]")
        );
    }
}
