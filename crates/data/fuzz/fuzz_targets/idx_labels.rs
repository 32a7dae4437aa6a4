//! Fuzz target: the IDX labels reader (raw or gzip) must return, never panic.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::with_file(data, "labels", bigbatch_data::vision::idx::read_idx_labels);
});
