//! Fuzz target: the IDX images reader (raw or gzip) must return, never panic.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::with_file(data, "images", bigbatch_data::vision::idx::read_idx_images);
});
