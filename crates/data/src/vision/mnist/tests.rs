//! Tests of the MNIST loaders, on files written by the tests themselves.

use super::*;
use crate::file::with_suffix;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("create a temporary directory")
}

/// `count` MNIST-shaped images of random pixels with labels `i mod 10`.
fn random_digits(count: usize, seed: u64) -> ImageClassification {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut pixels = vec![0u8; count * 784];
    rng.fill_bytes(&mut pixels);
    let labels = (0..count).map(|i| (i % 10) as u32).collect();
    ImageClassification::new(ImageShape::MNIST, pixels, labels, NUM_CLASSES).expect("valid")
}

fn assert_same_pixel_by_pixel(a: &ImageClassification, b: &ImageClassification) {
    assert_eq!(a.len(), b.len());
    assert_eq!(a.shape(), b.shape());
    for i in 0..a.len() {
        assert_eq!(a.label(i), b.label(i), "label {i}");
        for (k, (x, y)) in a.image(i).iter().zip(b.image(i)).enumerate() {
            assert_eq!(x, y, "image {i}, pixel {k}");
        }
    }
}

#[test]
fn write_then_load_round_trips_raw_and_gzip() -> Result<(), Error> {
    for gzip in [false, true] {
        let dir = tempdir();
        let train = random_digits(30, 1);
        let test = random_digits(7, 2);
        write_idx(dir.path(), Split::Train, &train, gzip)?;
        write_idx(dir.path(), Split::Test, &test, gzip)?;
        assert_same_pixel_by_pixel(&load(dir.path(), Split::Train)?, &train);
        assert_same_pixel_by_pixel(&load(dir.path(), Split::Test)?, &test);

        let suffix = if gzip { ".gz" } else { "" };
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .expect("list directory")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        let mut expected: Vec<String> = FILE_NAMES.iter().map(|n| format!("{n}{suffix}")).collect();
        expected.sort();
        assert_eq!(
            names, expected,
            "exactly the official files, no temporaries"
        );
    }
    Ok(())
}

#[test]
fn written_header_matches_the_spec() -> Result<(), Error> {
    let dir = tempdir();
    write_idx(dir.path(), Split::Train, &random_digits(3, 3), false)?;
    let images = fs::read(dir.path().join("train-images-idx3-ubyte")).expect("read");
    assert_eq!(
        images[..16],
        [0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 28, 0, 0, 0, 28]
    );
    assert_eq!(images.len(), 16 + 3 * 784);
    let labels = fs::read(dir.path().join("train-labels-idx1-ubyte")).expect("read");
    assert_eq!(labels, [0, 0, 8, 1, 0, 0, 0, 3, 0, 1, 2]);
    Ok(())
}

#[test]
fn gzip_is_detected_by_content_not_name() -> Result<(), Error> {
    let dir = tempdir();
    let data = random_digits(4, 4);
    write_idx(dir.path(), Split::Test, &data, true)?;
    // Strip the suffix: the files stay compressed but are found under the raw names.
    for name in ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"] {
        let raw = dir.path().join(name);
        fs::rename(with_suffix(&raw, ".gz"), &raw).expect("rename");
        assert_eq!(fs::read(&raw).expect("read")[..2], [0x1f, 0x8b]);
    }
    assert_same_pixel_by_pixel(&load(dir.path(), Split::Test)?, &data);
    Ok(())
}

#[test]
fn write_replaces_the_other_form() -> Result<(), Error> {
    let dir = tempdir();
    write_idx(dir.path(), Split::Test, &random_digits(2, 5), false)?;
    let newer = random_digits(3, 6);
    write_idx(dir.path(), Split::Test, &newer, true)?;
    assert!(!dir.path().join("t10k-images-idx3-ubyte").exists());
    assert_eq!(load(dir.path(), Split::Test)?, newer);
    Ok(())
}

#[test]
fn missing_file_names_path_and_hints_at_fetch() {
    let dir = tempdir();
    let error = load(dir.path(), Split::Train).expect_err("nothing there");
    let expected = dir.path().join("train-images-idx3-ubyte");
    assert!(matches!(error, Error::MissingFile { ref path, .. } if path == &expected));
    let text = error.to_string();
    assert!(text.contains(&expected.display().to_string()), "{text}");
    assert!(text.contains("cargo xtask fetch mnist"), "{text}");
}

#[test]
fn count_mismatch_names_both_files() -> Result<(), Error> {
    let dir = tempdir();
    write_idx(dir.path(), Split::Train, &random_digits(5, 7), false)?;
    let fewer = random_digits(4, 7);
    let labels_path = dir.path().join("train-labels-idx1-ubyte");
    write_atomic(
        &labels_path,
        &encode_labels(&labels_path, ImageShape::MNIST, fewer.labels())?,
    )?;

    let error = load(dir.path(), Split::Train).expect_err("5 images, 4 labels");
    assert!(matches!(
        error,
        Error::CountMismatch {
            image_count: 5,
            label_count: 4,
            ..
        }
    ));
    let text = error.to_string();
    assert!(text.contains("train-images-idx3-ubyte"), "{text}");
    assert!(text.contains("train-labels-idx1-ubyte"), "{text}");
    Ok(())
}

#[test]
fn label_of_ten_is_rejected_naming_the_labels_file() -> Result<(), Error> {
    let dir = tempdir();
    write_idx(dir.path(), Split::Test, &random_digits(3, 8), false)?;
    let labels_path = dir.path().join("t10k-labels-idx1-ubyte");
    write_atomic(&labels_path, &[0, 0, 8, 1, 0, 0, 0, 3, 1, 10, 2])?;
    let error = load(dir.path(), Split::Test).expect_err("label 10");
    assert!(matches!(
        error,
        Error::BadLabel { index: 1, label: 10, num_classes: 10, ref path } if path == &labels_path
    ));
    assert!(error.to_string().contains("t10k-labels-idx1-ubyte"));
    Ok(())
}

#[test]
fn truncated_and_trailing_files_are_named() -> Result<(), Error> {
    let dir = tempdir();
    write_idx(dir.path(), Split::Test, &random_digits(3, 9), false)?;
    let images_path = dir.path().join("t10k-images-idx3-ubyte");
    let bytes = fs::read(&images_path).expect("read");

    write_atomic(&images_path, &bytes[..bytes.len() - 100])?;
    let error = load(dir.path(), Split::Test).expect_err("truncated");
    assert!(matches!(
        error,
        Error::Truncated {
            expected_bytes: 2368,
            found_bytes: 2268,
            ..
        }
    ));
    assert!(error.to_string().contains("t10k-images-idx3-ubyte"));

    write_atomic(&images_path, &[bytes.as_slice(), &[0; 5]].concat())?;
    let error = load(dir.path(), Split::Test).expect_err("trailing bytes");
    assert!(matches!(
        error,
        Error::TrailingBytes {
            found_bytes: 2373,
            ..
        }
    ));
    assert!(error.to_string().contains("t10k-images-idx3-ubyte"));
    Ok(())
}

#[test]
fn corrupt_gzip_is_a_gzip_error_naming_the_file() -> Result<(), Error> {
    let dir = tempdir();
    write_idx(dir.path(), Split::Train, &random_digits(3, 10), true)?;
    let images_path = dir.path().join("train-images-idx3-ubyte.gz");
    let packed = fs::read(&images_path).expect("read");

    // A cut-off stream, then a stream whose CRC-32 trailer is wrong.
    let truncated = packed[..packed.len() / 2].to_vec();
    let mut bad_crc = packed.clone();
    let crc_at = bad_crc.len() - 8;
    bad_crc[crc_at] ^= 0xff;
    for corrupt in [truncated, bad_crc] {
        write_atomic(&images_path, &corrupt)?;
        let error = load(dir.path(), Split::Train).expect_err("corrupt gzip");
        assert!(
            matches!(error, Error::Gzip { ref path, .. } if path == &images_path),
            "{error}"
        );
        assert!(error.to_string().contains("train-images-idx3-ubyte.gz"));
    }
    Ok(())
}

#[test]
fn resources_follow_torchvision() {
    let digits = resources(Variant::Digits);
    let names: Vec<&str> = digits.iter().map(|r| r.file_name.as_str()).collect();
    assert_eq!(
        names,
        [
            "train-images-idx3-ubyte.gz",
            "train-labels-idx1-ubyte.gz",
            "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz"
        ]
    );
    assert_eq!(
        digits[3].checksum,
        Checksum::Md5("ec29112dd5afa0611ce80d1b7f02629c".to_owned())
    );
    assert_eq!(
        digits[1].mirrors,
        [
            "https://ossci-datasets.s3.amazonaws.com/mnist/train-labels-idx1-ubyte.gz",
            "http://yann.lecun.com/exdb/mnist/train-labels-idx1-ubyte.gz"
        ]
    );
    let fashion = resources(Variant::Fashion);
    assert_eq!(
        fashion[0].checksum,
        Checksum::Md5("8d4fb7e6c68d591d4c3dfef9ec88bf0d".to_owned())
    );
    assert_eq!(
        fashion[2].mirrors,
        ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/t10k-images-idx3-ubyte.gz"]
    );
    for resource in digits.iter().chain(&fashion) {
        let Checksum::Md5(hex) = &resource.checksum else {
            panic!("torchvision publishes MD5s");
        };
        assert!(hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    }
    assert_eq!(Variant::Fashion.class_names()[9], "Ankle boot");
}

/// A CSV row: `pixels` then the label.
fn csv_row(pixels: &[u8], label: &str) -> String {
    let mut fields: Vec<String> = pixels.iter().map(u8::to_string).collect();
    fields.push(label.to_owned());
    fields.join(",")
}

#[test]
fn reads_csv_plain_and_gzipped() -> Result<(), Error> {
    let dir = tempdir();
    let data = random_digits(6, 11);
    let mut text: String = (0..data.len())
        .map(|i| csv_row(data.image(i), &data.label(i).to_string()) + "\r\n")
        .collect();
    text.push('\n');
    let plain = dir.path().join("digits.csv");
    write_atomic(&plain, text.as_bytes())?;
    assert_same_pixel_by_pixel(&read_csv(&plain)?, &data);

    let packed = dir.path().join("digits.csv.gz");
    write_atomic(&packed, &compress(&packed, text.as_bytes())?)?;
    assert_same_pixel_by_pixel(&read_csv(&packed)?, &data);

    // numpy.savetxt's default float format also parses.
    let floats = dir.path().join("floats.csv");
    let row = vec!["2.550000000000000000e+02"; 784].join(",") + ",7.0\n";
    write_atomic(&floats, row.as_bytes())?;
    let parsed = read_csv(&floats)?;
    assert_eq!((parsed.image(0)[783], parsed.label(0)), (255, 7));
    Ok(())
}

#[test]
fn bad_csv_rows_report_path_line_and_problem() -> Result<(), Error> {
    let dir = tempdir();
    let good = csv_row(&[0; 784], "3");
    let mut wide = vec![1u8; 784];
    wide[4] = 0;
    let cases = [
        (
            csv_row(&[0; 783], "3"),
            2,
            CsvProblem::FieldCount {
                expected: 785,
                found: 784,
            },
        ),
        (
            good.replacen("0", "256", 1),
            2,
            CsvProblem::BadPixel {
                column: 1,
                text: "256".to_owned(),
            },
        ),
        (
            csv_row(&wide, "1").replacen(",0,", ",x,", 1),
            2,
            CsvProblem::BadPixel {
                column: 5,
                text: "x".to_owned(),
            },
        ),
        (
            csv_row(&[0; 784], "10"),
            2,
            CsvProblem::BadLabel {
                text: "10".to_owned(),
                num_classes: 10,
            },
        ),
        (
            csv_row(&[0; 784], "-1"),
            2,
            CsvProblem::BadLabel {
                text: "-1".to_owned(),
                num_classes: 10,
            },
        ),
    ];
    for (bad, line, problem) in cases {
        let path = dir.path().join("bad.csv");
        // Line 1 is good; the bad row is on line 2 (skipped blank/comment lines count).
        write_atomic(&path, format!("{good}\n{bad}\n{good}\n").as_bytes())?;
        let error = read_csv(&path).expect_err("bad row");
        assert!(
            matches!(error, Error::BadCsvRow { line: l, problem: ref p, .. } if l == line && p == &problem),
            "{error}"
        );
        assert!(
            error.to_string().contains(&format!("bad.csv:{line}:")),
            "{error}"
        );
    }

    let path = dir.path().join("late.csv");
    let mut bytes = format!("# comment\n\n{good}\n").into_bytes();
    bytes.extend([0xff, b'\n']); // invalid UTF-8 on line 4
    write_atomic(&path, &bytes)?;
    let error = read_csv(&path).expect_err("not UTF-8");
    assert!(
        matches!(
            error,
            Error::BadCsvRow {
                line: 4,
                problem: CsvProblem::NotUtf8,
                ..
            }
        ),
        "{error}"
    );
    Ok(())
}
