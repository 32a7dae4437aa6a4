//! Input-pipeline throughput (criterion; benchmarks, not tests).
//!
//! ```sh
//! cargo bench -p bigbatch-data --bench data
//! python3 crates/data/benches/pil_decode.py      # Pillow on the same JPEGs
//! ```
//!
//! - `idx`: IDX parse + normalise of 10,000 MNIST-sized images, in bytes/s (goal ≥ 1 GB/s).
//! - `cifar_batch`: gathering a 256-image CIFAR batch, plain and with pad-crop-flip;
//!   each pixel is read once and written once, normalised.
//! - `jpeg`: decode + random-resized-crop 224 + flip of 500×375 JPEGs on one thread, in
//!   images/s. The JPEGs are written to `$TMPDIR/bigbatch-bench-jpegs/` for
//!   `pil_decode.py` to time Pillow on the same files.

#![allow(missing_docs)]

use std::hint::black_box;
use std::path::PathBuf;

use bigbatch_data::vision::augment::Augment;
use bigbatch_data::vision::idx::read_idx_images;
use bigbatch_data::vision::image_folder::{ImageFolder, Transform};
use bigbatch_data::{ImageClassification, ImageShape, Normalization, Split, mnist};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random_images(shape: ImageShape, count: usize) -> ImageClassification {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut pixels = vec![0u8; shape.len() * count];
    rng.fill(pixels.as_mut_slice());
    let labels = (0..count).map(|i| (i % 10) as u32).collect();
    ImageClassification::new(shape, pixels, labels, 10).expect("valid")
}

fn idx(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = random_images(ImageShape::MNIST, 10_000);
    mnist::write_idx(dir.path(), Split::Train, &data, false).expect("write");
    let path = dir.path().join(mnist::FILE_NAMES[0]);
    let all: Vec<usize> = (0..data.len()).collect();
    let norm = Normalization::mnist();
    let mut group = c.benchmark_group("idx");
    group.throughput(Throughput::Bytes(data.pixels().len() as u64));
    group.bench_function("parse_normalise_10k", |b| {
        let (mut inputs, mut labels) = (Vec::new(), Vec::new());
        b.iter(|| {
            let images = read_idx_images(&path).expect("read");
            let parsed =
                ImageClassification::new(images.shape, images.pixels, data.labels().to_vec(), 10)
                    .expect("valid");
            parsed.batch_into(&all, &norm, &mut inputs, &mut labels);
            black_box(inputs.len())
        });
    });
    group.finish();
}

fn cifar_batch(c: &mut Criterion) {
    let data = random_images(ImageShape::new(3, 32, 32), 10_000);
    let batch: Vec<usize> = (0..256).map(|i| i * 37 % data.len()).collect();
    let norm = Normalization::cifar10();
    let mut group = c.benchmark_group("cifar_batch");
    group.throughput(Throughput::Bytes((batch.len() * 3072) as u64));
    let (mut inputs, mut labels) = (Vec::new(), Vec::new());
    group.bench_function("plain_256", |b| {
        b.iter(|| data.batch_into(&batch, &norm, &mut inputs, &mut labels));
    });
    group.bench_function("pad_crop_flip_256", |b| {
        b.iter(|| {
            data.augmented_batch_into(
                &batch,
                &norm,
                Augment::CIFAR,
                (1, 0),
                &mut inputs,
                &mut labels,
            )
        });
    });
    group.finish();
}

/// Sixteen 500×375 JPEGs (quality 90) of smooth gradients with noise, like photos.
fn write_jpegs() -> Vec<PathBuf> {
    let dir = std::env::temp_dir().join("bigbatch-bench-jpegs");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    (0..16)
        .map(|i| {
            let (w, h) = (500u32, 375u32);
            let rgb: Vec<u8> = (0..h)
                .flat_map(|y| (0..w).map(move |x| (x, y)))
                .flat_map(|(x, y)| {
                    [
                        (x * 255 / w) as i32,
                        (y * 255 / h) as i32,
                        ((x + y + 40 * i) % 256) as i32,
                    ]
                })
                .map(|v| (v + rng.random_range(-12..=12)).clamp(0, 255) as u8)
                .collect();
            let path = dir.join(format!("img_{i:02}.jpg"));
            let mut bytes = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
                .encode(&rgb, w, h, image::ExtendedColorType::Rgb8)
                .expect("encode");
            std::fs::write(&path, bytes).expect("write");
            path
        })
        .collect()
}

fn jpeg(c: &mut Criterion) {
    let paths = write_jpegs();
    let folder = ImageFolder::from_samples(
        vec!["x".into()],
        paths.into_iter().map(|p| (p, 0)).collect(),
    )
    .expect("folder");
    let mut group = c.benchmark_group("jpeg");
    group.throughput(Throughput::Elements(folder.len() as u64));
    let mut out = Vec::new();
    for (name, transform) in [
        ("decode_rrc224_flip", Transform::IMAGENET_TRAIN),
        ("decode_resize256_crop224", Transform::IMAGENET_EVAL),
    ] {
        let mut epoch = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                epoch += 1;
                for i in 0..folder.len() {
                    folder
                        .load_into(i, &transform, (0, epoch), &mut out)
                        .expect("decode");
                }
                black_box(out.len())
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(3));
    targets = idx, cifar_batch, jpeg
}
criterion_main!(benches);
