//! Fuzz target: the MNIST CSV reader must return, never panic.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::with_file(data, "digits.csv", bigbatch_data::mnist::read_csv);
});
