//! Learning-rate schedules: pure functions of the step.

use std::sync::Arc;

/// A learning rate (or any scalar) as a pure function of the step count.
pub trait Schedule: Send + Sync {
    /// The value at `step` (0-based: the first update uses `at(0)`).
    fn at(&self, step: u64) -> f64;
}

/// A constant schedule: a plain number is its own schedule.
impl Schedule for f64 {
    fn at(&self, _: u64) -> f64 {
        *self
    }
}

impl<S: Schedule + ?Sized> Schedule for Box<S> {
    fn at(&self, step: u64) -> f64 {
        (**self).at(step)
    }
}

impl<S: Schedule + ?Sized> Schedule for Arc<S> {
    fn at(&self, step: u64) -> f64 {
        (**self).at(step)
    }
}
