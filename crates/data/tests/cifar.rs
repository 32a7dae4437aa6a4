//! CIFAR-10/100 binary files in the official layout, as a `.tar.gz` and extracted,
//! checked pixel by pixel; every failure case; augmented batches.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use bigbatch_data::cifar::{self, Variant};
use bigbatch_data::vision::augment::Augment;
use bigbatch_data::{Error, Normalization, Split};
use flate2::Compression;
use flate2::write::GzEncoder;

/// Pixel `p` (0..3072, channel-major) of record `n` of file number `file`.
fn pixel(file: usize, n: usize, p: usize) -> u8 {
    ((p * 13 + n * 7 + file * 101) % 256) as u8
}

/// `count` records: CIFAR-10 `[label, pixels]` or CIFAR-100 `[coarse, fine, pixels]`.
fn records(variant: Variant, file: usize, count: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for n in 0..count {
        if variant.is_cifar100() {
            out.push(((n + file) % 20) as u8);
            out.push(((n * 3 + file) % 100) as u8);
        } else {
            out.push(((n + file) % 10) as u8);
        }
        out.extend((0..3072).map(|p| pixel(file, n, p)));
    }
    out
}

/// The members of `variant`'s archive: each split's files, 3 records each, plus the
/// label-name text file.
fn members(variant: Variant) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut file = 0;
    for split in [Split::Train, Split::Test] {
        for name in variant.files(split) {
            out.push((
                format!("{}/{name}", variant.member_dir()),
                records(variant, file, 3),
            ));
            file += 1;
        }
    }
    out.push((
        format!("{}/batches.meta.txt", variant.member_dir()),
        b"airplane\n".to_vec(),
    ));
    out
}

fn tar_gz(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    // The test batch first: members may come in any order.
    for (name, bytes) in members.iter().rev() {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, name, bytes.as_slice())
            .expect("append");
    }
    builder
        .into_inner()
        .and_then(|gz| gz.finish())
        .expect("finish archive")
}

/// Checks `split` of `variant` against the generator, file by file.
fn check(path: &Path, variant: Variant, split: Split) -> Result<(), Error> {
    let data = cifar::load(path, variant, split)?;
    let first_file = if split == Split::Train {
        0
    } else {
        variant.files(Split::Train).len()
    };
    let files = variant.files(split).len();
    assert_eq!(data.len(), 3 * files);
    assert_eq!(data.num_classes(), variant.num_classes());
    for f in 0..files {
        for n in 0..3 {
            let i = 3 * f + n;
            let file = first_file + f;
            let expected = match variant {
                Variant::Cifar100Coarse => (n + file) % 20,
                Variant::Cifar100Fine => (n * 3 + file) % 100,
                _ => (n + file) % 10,
            };
            assert_eq!(data.label(i) as usize, expected, "label {i}");
            for (p, &value) in data.image(i).iter().enumerate() {
                assert_eq!(value, pixel(file, n, p), "image {i} pixel {p}");
            }
        }
    }
    Ok(())
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

#[test]
fn reads_archives_and_extracted_files_pixel_by_pixel() -> Result<(), Error> {
    for variant in [
        Variant::Cifar10,
        Variant::Cifar100Fine,
        Variant::Cifar100Coarse,
    ] {
        let dir = tempdir();
        let members = members(variant);
        let archive = dir.path().join(variant.archive_name());
        fs::write(&archive, tar_gz(&members)).expect("write archive");
        for split in [Split::Train, Split::Test] {
            check(&archive, variant, split)?; // the archive itself
            check(dir.path(), variant, split)?; // a directory holding it
            assert_eq!(
                cifar::source_files(dir.path(), variant, split)?,
                std::slice::from_ref(&archive)
            );
        }
        let extracted = tempdir();
        for (name, bytes) in &members {
            let path = extracted.path().join(name);
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            fs::write(path, bytes).expect("write member");
        }
        for split in [Split::Train, Split::Test] {
            check(extracted.path(), variant, split)?;
            check(&extracted.path().join(variant.member_dir()), variant, split)?;
            let expected: Vec<PathBuf> = variant
                .files(split)
                .iter()
                .map(|f| extracted.path().join(variant.member_dir()).join(f))
                .collect();
            assert_eq!(
                cifar::source_files(extracted.path(), variant, split)?,
                expected
            );
        }
    }
    Ok(())
}

#[test]
fn cifar100_keeps_both_label_kinds() -> Result<(), Error> {
    let dir = tempdir();
    let archive = dir.path().join("c100.tar.gz");
    fs::write(&archive, tar_gz(&members(Variant::Cifar100Fine))).expect("write");
    let records = cifar::read_records(&archive, Variant::Cifar100Fine, Split::Test)?;
    assert_eq!(records.coarse, [1, 2, 3]); // (n + file) % 20 with file = 1
    assert_eq!(records.fine, [1, 4, 7]); // (3n + file) % 100
    assert_eq!(records.pixels.len(), 3 * 3072);
    Ok(())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(&path, bytes).expect("write");
    path
}

#[test]
fn failures_are_typed_and_name_the_file() {
    let variant = Variant::Cifar10;
    let dir = tempdir();
    let good = tar_gz(&members(variant));

    // Corrupt gzip: damage the deflate stream.
    let mut corrupt = good.clone();
    let middle = corrupt.len() / 2;
    for byte in &mut corrupt[middle..middle + 64] {
        *byte ^= 0xA5;
    }
    let path = write(dir.path(), "corrupt.tar.gz", &corrupt);
    let error = cifar::load(&path, variant, Split::Train).expect_err("corrupt gzip");
    assert!(
        matches!(error, Error::Gzip { .. } | Error::Archive { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("corrupt.tar.gz"));

    // Truncated archive.
    let path = write(dir.path(), "short.tar.gz", &good[..good.len() / 2]);
    let error = cifar::load(&path, variant, Split::Test).expect_err("truncated");
    assert!(error.to_string().contains("short.tar.gz"), "{error}");

    // A truncated record in an extracted file.
    let mut batch = records(variant, 5, 2);
    batch.pop();
    let extracted = dir.path().join("x");
    let bad = write(&extracted, "cifar-10-batches-bin/test_batch.bin", &batch);
    let error = cifar::load(&extracted, variant, Split::Test).expect_err("truncated record");
    assert!(
        matches!(error, Error::Truncated { ref path, expected_bytes: 6146, found_bytes: 6145 } if path == &bad),
        "{error}"
    );

    // A label out of range.
    let mut batch = records(variant, 5, 2);
    batch[3073] = 10;
    write(&extracted, "cifar-10-batches-bin/test_batch.bin", &batch);
    assert!(matches!(
        cifar::load(&extracted, variant, Split::Test),
        Err(Error::BadLabel {
            index: 1,
            label: 10,
            ..
        })
    ));

    // A split with one file missing among the extracted ones.
    write(
        &extracted,
        "cifar-10-batches-bin/data_batch_1.bin",
        &records(variant, 0, 1),
    );
    let error = cifar::load(&extracted, variant, Split::Train).expect_err("missing batch 2");
    assert!(
        matches!(error, Error::MissingFile { ref path, .. } if path.ends_with("data_batch_2.bin"))
    );

    // An archive without the test member.
    let partial: Vec<_> = members(variant)
        .into_iter()
        .filter(|(n, _)| !n.contains("test"))
        .collect();
    let path = write(dir.path(), "partial.tar.gz", &tar_gz(&partial));
    let error = cifar::load(&path, variant, Split::Test).expect_err("missing member");
    assert!(
        matches!(error, Error::MissingFile { ref path, .. } if path.ends_with("test_batch.bin"))
    );

    // Nothing at all.
    let empty = tempdir();
    assert!(matches!(
        cifar::load(empty.path(), variant, Split::Train),
        Err(Error::MissingFile { .. })
    ));

    // Checksum of the real archive is the published one (checked by `download::verify`).
    let resource = cifar::resource(variant);
    let error = bigbatch_data::download::verify(&path, &resource.checksum).expect_err("mismatch");
    assert!(matches!(error, Error::Checksum { .. }));
}

#[test]
fn augmented_batches_are_deterministic_and_match_the_reference() -> Result<(), Error> {
    let dir = tempdir();
    let archive = dir.path().join("c10.tar.gz");
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(&[]).expect("noop");
    fs::write(&archive, tar_gz(&members(Variant::Cifar10))).expect("write");
    let data = cifar::load(&archive, Variant::Cifar10, Split::Train)?;
    let norm = Normalization::cifar10();
    let (mut a, mut b, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    data.augmented_batch_into(
        &[3, 1, 4],
        &norm,
        Augment::CIFAR,
        (9, 2),
        &mut a,
        &mut labels,
    );
    // The same examples in another batch get the same augmentation.
    data.augmented_batch_into(&[4, 3], &norm, Augment::CIFAR, (9, 2), &mut b, &mut labels);
    assert_eq!(a[2 * 3072..], b[..3072]);
    assert_eq!(a[..3072], b[3072..]);
    // Identity augmentation is plain batching.
    data.augmented_batch_into(
        &[3, 1],
        &norm,
        Augment::Identity,
        (9, 2),
        &mut a,
        &mut labels,
    );
    data.batch_into(&[3, 1], &norm, &mut b, &mut labels);
    assert_eq!(a, b);
    // Each output pixel is the padded, shifted, maybe flipped source pixel.
    data.augmented_batch_into(&[2], &norm, Augment::CIFAR, (9, 2), &mut a, &mut labels);
    let (dy, dx, flip) = Augment::CIFAR.draw(9, 2, 2);
    let image = data.image(2);
    for c in 0..3 {
        for y in 0..32 {
            for x in 0..32 {
                let sx = if flip { 31 - x } else { x } as isize + dx as isize - 4;
                let sy = y as isize + dy as isize - 4;
                let source = if (0..32).contains(&sx) && (0..32).contains(&sy) {
                    image[c * 1024 + sy as usize * 32 + sx as usize]
                } else {
                    0
                };
                assert_eq!(a[c * 1024 + y * 32 + x], norm.apply(c, source));
            }
        }
    }
    Ok(())
}
