//! Every parser on random and mutated inputs: an `Err` is fine, a panic is not.
//!
//! The stable-Rust counterpart of the `cargo fuzz` targets in `fuzz/`: random bytes,
//! and valid files with random bytes flipped and random truncation (which reach far
//! deeper into the formats than pure noise).

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;

use bigbatch_data::cifar::{self, Variant};
use bigbatch_data::vision::image_folder::decode_jpeg_bytes;
use bigbatch_data::vision::mat::parse_mat;
use bigbatch_data::vision::{idx, mnist, svhn};
use bigbatch_data::{ImageClassification, ImageShape, Split};
use flate2::Compression;
use flate2::write::GzEncoder;
use proptest::prelude::*;

/// `valid` with the given bytes XOR-ed and cut to `keep` of its length.
fn mutate(valid: &[u8], flips: &[(usize, u8)], keep: f64) -> Vec<u8> {
    let mut bytes = valid.to_vec();
    if !bytes.is_empty() {
        for &(position, mask) in flips {
            let len = bytes.len();
            bytes[position % len] ^= mask;
        }
    }
    bytes.truncate((bytes.len() as f64 * keep).ceil() as usize);
    bytes
}

fn flips() -> impl Strategy<Value = Vec<(usize, u8)>> {
    prop::collection::vec((any::<usize>(), 1u8..=255), 0..6)
}

fn valid_idx() -> (Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data =
        ImageClassification::new(ImageShape::new(1, 4, 3), (0..24).collect(), vec![1, 7], 10)
            .expect("valid");
    mnist::write_idx(dir.path(), Split::Train, &data, true).expect("write");
    let read = |name: &str| fs::read(dir.path().join(format!("{name}.gz"))).expect("read");
    (read(mnist::FILE_NAMES[0]), read(mnist::FILE_NAMES[1]))
}

fn valid_cifar() -> Vec<u8> {
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    let mut record = vec![3u8];
    record.extend((0..3072).map(|i| (i % 251) as u8));
    let mut header = tar::Header::new_gnu();
    header.set_size(record.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(
            &mut header,
            "cifar-10-batches-bin/test_batch.bin",
            record.as_slice(),
        )
        .expect("append");
    builder
        .into_inner()
        .and_then(|gz| gz.finish())
        .expect("finish")
}

fn valid_jpeg() -> Vec<u8> {
    let rgb: Vec<u8> = (0..16 * 12 * 3).map(|i| (i * 7 % 256) as u8).collect();
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode(&rgb, 16, 12, image::ExtendedColorType::Rgb8)
        .expect("encode");
    out
}

/// Writes `bytes` to a fresh file and runs `parse` on it, ignoring the result.
fn on_file<T>(bytes: &[u8], name: &str, parse: impl Fn(&Path) -> T) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    fs::File::create(&path)
        .and_then(|mut f| f.write_all(bytes))
        .expect("write");
    let _ = parse(&path);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn idx_parsers_never_panic(noise in prop::collection::vec(any::<u8>(), 0..64), flips in flips(), keep in 0.0..=1.0f64) {
        let (images, labels) = valid_idx();
        for bytes in [noise.clone(), mutate(&images, &flips, keep), mutate(&labels, &flips, keep)] {
            on_file(&bytes, "f", idx::read_idx_images);
            on_file(&bytes, "f", idx::read_idx_labels);
        }
    }

    #[test]
    fn csv_parser_never_panics(text in "[0-9,. \n#e-]{0,200}", noise in prop::collection::vec(any::<u8>(), 0..64)) {
        on_file(text.as_bytes(), "a.csv", |p| mnist::read_csv_with(p, ImageShape::new(1, 1, 2), 3));
        on_file(&noise, "b.csv", mnist::read_csv);
    }

    #[test]
    fn cifar_reader_never_panics(noise in prop::collection::vec(any::<u8>(), 0..600), flips in flips(), keep in 0.0..=1.0f64) {
        let archive = valid_cifar();
        for bytes in [noise.clone(), mutate(&archive, &flips, keep)] {
            on_file(&bytes, "c.tar.gz", |p| cifar::load(p, Variant::Cifar10, Split::Test));
        }
        // Extracted records of any length and content.
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("test.bin"), &noise).expect("write");
        let _ = cifar::load(dir.path(), Variant::Cifar100Fine, Split::Test);
    }

    #[test]
    fn mat_reader_never_panics(noise in prop::collection::vec(any::<u8>(), 0..300), flips in flips(), keep in 0.0..=1.0f64) {
        let svhn_plain = common::mat_file(&common::svhn_variables(&[1.0, 10.0]), false);
        let svhn_packed = common::mat_file(&common::svhn_variables(&[4.0]), true);
        let meta = common::meta_mat(&["n1", "n2"]);
        let mut header_noise = svhn_plain[..128].to_vec();
        header_noise.extend(&noise);
        for bytes in [noise.clone(), header_noise, mutate(&svhn_plain, &flips, keep), mutate(&svhn_packed, &flips, keep), mutate(&meta, &flips, keep)] {
            let _ = parse_mat(Path::new("fuzz.mat"), bytes.as_slice());
            on_file(&bytes, "s.mat", svhn::read_file);
        }
    }

    #[test]
    fn jpeg_decoder_never_panics(noise in prop::collection::vec(any::<u8>(), 0..300), flips in flips(), keep in 0.0..=1.0f64) {
        let jpeg = valid_jpeg();
        for bytes in [noise.clone(), mutate(&jpeg, &flips, keep)] {
            let _ = decode_jpeg_bytes(Path::new("fuzz.jpg"), &bytes);
        }
    }
}
