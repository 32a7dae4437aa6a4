//! Fuzz target: the CIFAR .tar.gz reader must return, never panic.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::with_file(data, "cifar-10-binary.tar.gz", |p| {
        bigbatch_data::cifar::load(
            p,
            bigbatch_data::cifar::Variant::Cifar10,
            bigbatch_data::Split::Test,
        )
    });
});
