//! Fuzz target: the MAT v5 reader must return, never panic.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = bigbatch_data::vision::mat::parse_mat(std::path::Path::new("fuzz.mat"), data);
});
