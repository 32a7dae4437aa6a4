//! Fuzz target: the SVHN loader must return, never panic.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::with_file(data, "train_32x32.mat", bigbatch_data::svhn::read_file);
});
