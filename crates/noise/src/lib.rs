//! Measurements of large-batch training: gradient noise scale, critical batch size, sharpness.
//!
//! (Populated by the noise-scale issue.)
