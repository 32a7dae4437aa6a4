//! Which parameters a transform touches: by parameter kind or by name pattern.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What a trainable parameter is. Models declare it for each parameter they
/// create; optimizer masks select by it (the large-batch recipes exempt
/// biases and normalisation parameters from weight decay and from the
/// layer-wise trust ratio), never by tensor rank.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ParamKind {
    /// A dense or convolution weight.
    Weight,
    /// The bias of a dense or convolution layer.
    Bias,
    /// A normalisation layer's scale `γ`.
    NormScale,
    /// A normalisation layer's shift `β`.
    NormShift,
    /// An embedding table.
    Embedding,
}

impl ParamKind {
    /// Every kind, in declaration order.
    pub const ALL: [ParamKind; 5] = [
        ParamKind::Weight,
        ParamKind::Bias,
        ParamKind::NormScale,
        ParamKind::NormShift,
        ParamKind::Embedding,
    ];

    /// Whether the large-batch recipes (Goyal et al. 2017, MLPerf ResNet-50,
    /// You et al. 2017/2020) apply weight decay to this kind: weights only.
    pub fn takes_weight_decay(self) -> bool {
        self == Self::Weight
    }
}

/// Which parameters a transform applies to: all of them except the kinds
/// and name patterns listed. The default selects every parameter.
///
/// Patterns match whole names, `*` standing for any run of characters
/// (`"fc*.bias"`, `"layer4.*"`). A pattern that matches no parameter is an
/// error when the optimizer is built ([`MaskSpec::check_patterns`]), never a
/// silent no-op.
///
/// ```
/// use bigbatch_spec::{MaskSpec, ParamKind};
/// let m = MaskSpec::weights_only();
/// assert!(m.selects("fc1.weight", Some(ParamKind::Weight)));
/// assert!(!m.selects("bn1.weight", Some(ParamKind::NormScale)));
/// let m = MaskSpec { exclude_names: vec!["fc*.bias".into()], ..MaskSpec::default() };
/// assert!(!m.selects("fc2.bias", None) && m.selects("conv1.bias", None));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskSpec {
    /// Parameter kinds left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_kinds: Vec<ParamKind>,
    /// Name patterns left out (`*` matches any run of characters).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_names: Vec<String>,
}

impl MaskSpec {
    /// Every parameter.
    pub fn all() -> Self {
        Self::default()
    }

    /// Weights only: biases, normalisation scales and shifts and embeddings
    /// left out, as the MLPerf LARS reference and LAMB do.
    pub fn weights_only() -> Self {
        Self {
            exclude_kinds: vec![
                ParamKind::Bias,
                ParamKind::NormScale,
                ParamKind::NormShift,
                ParamKind::Embedding,
            ],
            exclude_names: Vec::new(),
        }
    }

    /// Whether every parameter is selected.
    pub fn is_all(&self) -> bool {
        self.exclude_kinds.is_empty() && self.exclude_names.is_empty()
    }

    /// Whether the parameter `name` of kind `kind` (if known) is selected.
    pub fn selects(&self, name: &str, kind: Option<ParamKind>) -> bool {
        let excluded_kind = kind.is_some_and(|k| self.exclude_kinds.contains(&k));
        let excluded_name = self.exclude_names.iter().any(|p| glob_match(p, name));
        !(excluded_kind || excluded_name)
    }

    /// Checks that every pattern matches at least one of `names`, and that
    /// kinds are known for every parameter when the mask selects by kind.
    ///
    /// # Errors
    /// [`Error::MaskMatchesNothing`] naming the pattern; [`Error::Inconsistent`]
    /// when the mask excludes kinds but `kinds_known` is false.
    pub fn check_patterns<'a>(
        &self,
        mask: &'static str,
        names: impl IntoIterator<Item = &'a str> + Clone,
        kinds_known: bool,
    ) -> Result<()> {
        for pattern in &self.exclude_names {
            if !names.clone().into_iter().any(|n| glob_match(pattern, n)) {
                return Err(Error::MaskMatchesNothing {
                    mask,
                    pattern: pattern.clone(),
                });
            }
        }
        if !self.exclude_kinds.is_empty() && !kinds_known {
            return Err(Error::Inconsistent {
                field: mask.to_owned(),
                problem: "excludes parameter kinds, but the parameters carry no kinds (build them from a model's VarStore)".into(),
            });
        }
        Ok(())
    }
}

/// Whether `name` matches `pattern` as a whole, `*` matching any run of
/// characters (including none).
fn glob_match(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty(); // no `*`: the whole name
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_whole_names() {
        let cases = [
            ("fc1.bias", "fc1.bias", true),
            ("fc1.bias", "fc1.bias2", false),
            ("fc*.bias", "fc2.bias", true),
            ("fc*.bias", "conv.bias", false),
            ("*.bias", "layer1.0.conv.bias", true),
            ("layer4.*", "layer4.0.bn1.weight", true),
            ("*", "", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "acb", false),
            ("a*bc", "abc", true),
            ("ab*bc", "abc", false),
        ];
        for (p, n, want) in cases {
            assert_eq!(glob_match(p, n), want, "{p} vs {n}");
        }
    }

    #[test]
    fn a_pattern_matching_nothing_is_an_error() {
        let m = MaskSpec {
            exclude_names: vec!["fc9.*".into()],
            ..MaskSpec::default()
        };
        let err = m.check_patterns("weight_decay_mask", ["fc1.weight", "fc1.bias"], true);
        assert_eq!(
            err,
            Err(Error::MaskMatchesNothing {
                mask: "weight_decay_mask",
                pattern: "fc9.*".into()
            })
        );
        assert!(
            MaskSpec::weights_only()
                .check_patterns("m", ["w"], false)
                .is_err()
        );
    }
}
