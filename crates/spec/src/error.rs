//! The one error type of `bigbatch-spec`.

/// A spec that cannot be built: every variant names the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A number outside its documented range.
    #[error("`{field}` = {value} is out of range: {expected}")]
    OutOfRange {
        /// The field, as a path into the spec (`optimizer.b2`).
        field: String,
        /// The value given.
        value: f64,
        /// The valid range, in words.
        expected: &'static str,
    },
    /// An optimizer, schedule or workload name that does not exist.
    #[error("unknown {what} `{name}`; expected one of: {valid}")]
    UnknownName {
        /// What was being named (`optimizer`, `schedule`).
        what: &'static str,
        /// The name given.
        name: String,
        /// The valid names, comma-separated.
        valid: String,
    },
    /// A hyperparameter that the chosen optimizer or schedule does not have.
    #[error("`{field}` does not apply to {owner}; it takes: {valid}")]
    NotApplicable {
        /// The field given.
        field: String,
        /// The optimizer or schedule it was given to.
        owner: String,
        /// The fields it does take, comma-separated.
        valid: String,
    },
    /// A mask pattern that selects no parameter (almost always a typo).
    #[error("mask `{mask}`: the pattern `{pattern}` matches no parameter")]
    MaskMatchesNothing {
        /// Which mask (`weight_decay_mask`, `trust_ratio_mask`).
        mask: &'static str,
        /// The pattern.
        pattern: String,
    },
    /// Values that are each valid but not together.
    #[error("`{field}`: {problem}")]
    Inconsistent {
        /// The field at fault.
        field: String,
        /// What is wrong, in words.
        problem: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Checks `ok`, else [`Error::OutOfRange`] for `field = value`.
pub(crate) fn ensure(ok: bool, field: &str, value: f64, expected: &'static str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::OutOfRange {
            field: field.to_owned(),
            value,
            expected,
        })
    }
}

/// `value` finite and `> 0`.
pub(crate) fn positive(field: &str, value: f64) -> Result<()> {
    ensure(
        value.is_finite() && value > 0.0,
        field,
        value,
        "a finite number > 0",
    )
}

/// `value` finite and `≥ 0`.
pub(crate) fn non_negative(field: &str, value: f64) -> Result<()> {
    ensure(
        value.is_finite() && value >= 0.0,
        field,
        value,
        "a finite number >= 0",
    )
}

/// `value` in `[0, 1)`: a decay rate or momentum.
pub(crate) fn unit(field: &str, value: f64) -> Result<()> {
    ensure((0.0..1.0).contains(&value), field, value, "in [0, 1)")
}

/// `value` in `[0, 1]`: a fraction.
pub(crate) fn fraction(field: &str, value: f64) -> Result<()> {
    ensure((0.0..=1.0).contains(&value), field, value, "in [0, 1]")
}
