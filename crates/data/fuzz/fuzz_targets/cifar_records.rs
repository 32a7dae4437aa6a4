//! Fuzz target: the CIFAR record reader (extracted files) must return, never panic.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("test.bin"), data).expect("write");
    let _ = bigbatch_data::cifar::load(
        dir.path(),
        bigbatch_data::cifar::Variant::Cifar100Coarse,
        bigbatch_data::Split::Test,
    );
});
