//! Fuzz target: JPEG decoding plus the training transform must return, never panic.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((rgb, w, h)) = bigbatch_data::vision::image_folder::decode_jpeg_bytes(
        std::path::Path::new("fuzz.jpg"),
        data,
    ) {
        let mut out = Vec::new();
        bigbatch_data::vision::image_folder::Transform::IMAGENET_TRAIN.apply(
            &rgb,
            (w, h),
            (0, 0, 0),
            &mut out,
        );
    }
});
