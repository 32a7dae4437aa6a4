//! How a measurement treats batch normalisation.

use serde::{Deserialize, Serialize};

/// Which statistics a model's batch-norm layers use while a measurement
/// (noise scale, sharpness, interpolation) evaluates it. Every measurement
/// result states the policy it ran with: the three can give different
/// numbers for the same weights.
///
/// ```
/// use bigbatch_spec::BatchNormPolicy;
/// let p: BatchNormPolicy = "recompute:20".parse().unwrap();
/// assert_eq!(p, BatchNormPolicy::Recompute { batches: 20 });
/// assert_eq!(p.to_string(), "recompute:20");
/// assert!("recompute:0".parse::<BatchNormPolicy>().is_err());
/// assert!(BatchNormPolicy::is_statistic("layer1.0.bn1.running_var"));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "policy")]
pub enum BatchNormPolicy {
    /// The batch statistics of each measurement batch, as during training;
    /// the running statistics are left as they were.
    Train,
    /// The running statistics stored with the weights, frozen (along an
    /// interpolation: interpolated like every other tensor).
    #[default]
    Eval,
    /// Running statistics re-estimated at the evaluated weights from
    /// `batches` training batches (their cumulative average), then frozen:
    /// the faithful choice away from trained weights, where stored
    /// statistics do not match the weights.
    Recompute {
        /// Training batches the statistics are averaged over.
        batches: usize,
    },
}

impl BatchNormPolicy {
    /// Whether a tensor name is a batch-norm running statistic, by the
    /// PyTorch keys the project's parameter names follow: it ends in
    /// `running_mean`, `running_var` or `num_batches_tracked`.
    pub fn is_statistic(name: &str) -> bool {
        ["running_mean", "running_var", "num_batches_tracked"]
            .iter()
            .any(|s| name.ends_with(s))
    }

    /// Whether the running statistics of weights combined from others (an
    /// interpolation) are the same combination of theirs: only under
    /// [`BatchNormPolicy::Eval`]; the others drop them.
    pub fn combines_statistics(self) -> bool {
        self == BatchNormPolicy::Eval
    }
}

impl std::fmt::Display for BatchNormPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BatchNormPolicy::Train => f.write_str("train"),
            BatchNormPolicy::Eval => f.write_str("eval"),
            BatchNormPolicy::Recompute { batches } => write!(f, "recompute:{batches}"),
        }
    }
}

impl std::str::FromStr for BatchNormPolicy {
    type Err = crate::Error;

    fn from_str(s: &str) -> crate::Result<Self> {
        let bad = || crate::Error::UnknownName {
            what: "batch-norm policy",
            name: s.to_owned(),
            valid: "train, eval, recompute:N (N >= 1 training batches)".to_owned(),
        };
        match s.split_once(':') {
            None if s == "train" => Ok(BatchNormPolicy::Train),
            None if s == "eval" => Ok(BatchNormPolicy::Eval),
            Some(("recompute", n)) => match n.parse::<usize>() {
                Ok(batches) if batches >= 1 => Ok(BatchNormPolicy::Recompute { batches }),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}
