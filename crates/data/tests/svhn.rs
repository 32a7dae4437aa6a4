//! SVHN `.mat` files: golden files written by SciPy, files from the test's own MAT v5
//! writer (compressed and not), checked pixel by pixel, and every failure case.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use bigbatch_data::svhn::{self, SvhnSplit};
use bigbatch_data::vision::mat::{MatData, parse_mat, read_mat};
use bigbatch_data::{Error, ImageClassification, MatProblem};
use common::{Value, mat_file, svhn_pixel, svhn_variables};

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Checks every pixel against `svhn_pixel` and the labels.
fn check(data: &ImageClassification, labels: &[u32]) {
    assert_eq!(data.shape(), svhn::SHAPE);
    assert_eq!(data.labels(), labels);
    for n in 0..data.len() {
        let image = data.image(n);
        for k in 0..3 {
            for r in 0..32 {
                for c in 0..32 {
                    assert_eq!(
                        image[1024 * k + 32 * r + c],
                        svhn_pixel(r, c, k, n),
                        "{n} {k} {r} {c}"
                    );
                }
            }
        }
    }
}

#[test]
fn reads_scipy_golden_files() -> Result<(), Error> {
    // Labels 3 and 10; 10 is the digit 0.
    check(
        &svhn::read_file(&golden("svhn_golden_compressed.mat"))?,
        &[3, 0],
    );
    check(&svhn::read_file(&golden("svhn_golden_plain.mat"))?, &[3, 0]);
    Ok(())
}

#[test]
fn reads_own_writer_files_from_a_data_dir() -> Result<(), Error> {
    let dir = tempfile::tempdir().map_err(|e| Error::Io {
        path: "tmp".into(),
        source: e,
    })?;
    let labels = [1.0, 10.0, 5.0, 9.0];
    for (compress, split) in [(true, SvhnSplit::Train), (false, SvhnSplit::Extra)] {
        fs::write(
            dir.path().join(split.file_name()),
            mat_file(&svhn_variables(&labels), compress),
        )
        .map_err(|e| Error::Io {
            path: "write".into(),
            source: e,
        })?;
        check(&svhn::load(dir.path(), split)?, &[1, 0, 5, 9]);
    }
    let missing = svhn::load(dir.path(), SvhnSplit::Test);
    assert!(
        matches!(missing, Err(Error::MissingFile { ref path, .. }) if path.ends_with("test_32x32.mat"))
    );
    Ok(())
}

#[test]
fn a_single_image_drops_the_trailing_dimension() -> Result<(), Error> {
    // MATLAB drops trailing singleton dimensions: X of one image is [32, 32, 3].
    let mut variables = svhn_variables(&[7.0]);
    variables[0].1 = vec![32, 32, 3];
    let dir = tempfile::tempdir().map_err(|e| Error::Io {
        path: "tmp".into(),
        source: e,
    })?;
    let path = dir.path().join("one.mat");
    fs::write(&path, mat_file(&variables, true)).map_err(|e| Error::Io {
        path: path.clone(),
        source: e,
    })?;
    check(&svhn::read_file(&path)?, &[7]);
    Ok(())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).expect("write test file");
    path
}

#[test]
fn failures_are_typed_and_name_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = mat_file(&svhn_variables(&[1.0, 2.0]), true);
    let plain = mat_file(&svhn_variables(&[1.0, 2.0]), false);

    // Wrong magic: an HDF5 (v7.3) signature instead of the MATLAB 5.0 header.
    let mut hdf5 = b"\x89HDF\r\n\x1a\n".to_vec();
    hdf5.resize(200, 0);
    let path = write(dir.path(), "v73.mat", &hdf5);
    let error = svhn::read_file(&path).expect_err("not v5");
    assert!(matches!(
        error,
        Error::BadMat {
            problem: MatProblem::NotMatV5,
            ..
        }
    ));
    assert!(error.to_string().contains("v73.mat"));

    // Truncated: in the compressed stream, and in an uncompressed element.
    let path = write(dir.path(), "short.mat", &good[..good.len() - 10]);
    assert!(
        matches!(svhn::read_file(&path), Err(Error::Truncated { path: ref p, .. }) if p == &path)
    );
    let path = write(dir.path(), "short-plain.mat", &plain[..plain.len() - 100]);
    assert!(
        matches!(svhn::read_file(&path), Err(Error::Truncated { path: ref p, .. }) if p == &path)
    );
    let path = write(dir.path(), "header.mat", &good[..60]);
    assert!(matches!(svhn::read_file(&path), Err(Error::BadMat { .. })));

    // Corrupt zlib: flip bytes in the middle of the first compressed element.
    let mut corrupt = good.clone();
    for byte in &mut corrupt[150..170] {
        *byte ^= 0x5A;
    }
    let path = write(dir.path(), "corrupt.mat", &corrupt);
    let error = svhn::read_file(&path).expect_err("corrupt");
    assert!(
        matches!(error, Error::Zlib { .. } | Error::BadMat { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("corrupt.mat"));

    // Missing variable.
    let only_x = mat_file(&svhn_variables(&[1.0])[..1], true);
    let path = write(dir.path(), "only-x.mat", &only_x);
    assert!(matches!(
        svhn::read_file(&path),
        Err(Error::BadMat { problem: MatProblem::MissingVariable { ref name }, .. }) if name == "y"
    ));

    // Count mismatch: 2 images, 3 labels.
    let mut variables = svhn_variables(&[1.0, 2.0]);
    variables[1] = svhn_variables(&[1.0, 2.0, 3.0]).remove(1);
    let path = write(dir.path(), "count.mat", &mat_file(&variables, false));
    assert!(matches!(
        svhn::read_file(&path),
        Err(Error::CountMismatch {
            image_count: 2,
            label_count: 3,
            ..
        })
    ));

    // Label out of 1..=10.
    let path = write(
        dir.path(),
        "label.mat",
        &mat_file(&svhn_variables(&[1.0, 11.0]), true),
    );
    assert!(matches!(
        svhn::read_file(&path),
        Err(Error::BadLabel {
            index: 1,
            label: 11,
            ..
        })
    ));

    // X of the wrong class (double instead of uint8).
    let mut variables = svhn_variables(&[1.0]);
    variables[0].2 = Value::Numeric {
        class: 6,
        storage: 9,
        bytes: vec![0; 3072 * 8],
    };
    let path = write(dir.path(), "class.mat", &mat_file(&variables, true));
    assert!(matches!(
        svhn::read_file(&path),
        Err(Error::BadMat {
            problem: MatProblem::Unexpected { .. },
            ..
        })
    ));
}

#[test]
fn mat_reader_handles_structs_small_elements_and_storage_types() -> Result<(), Error> {
    let bytes = common::meta_mat(&["n02119789", "n02100735"]);
    let variables = parse_mat(Path::new("meta.mat"), bytes.as_slice())?;
    assert_eq!(variables.len(), 1);
    let synsets = &variables[0];
    assert_eq!(
        (synsets.name.as_str(), synsets.dims.as_slice()),
        ("synsets", &[3, 1][..])
    );
    assert_eq!(
        synsets.field(1, "WNID").and_then(|a| a.as_str()),
        Some("n02100735")
    );
    assert_eq!(
        synsets.field(2, "ILSVRC2012_ID").and_then(|a| a.to_f64()),
        Some(vec![3.0])
    );
    assert!(matches!(synsets.data, MatData::Struct { ref fields, .. } if fields.len() == 4));

    // The scipy golden file: y stored as uint8.
    let golden = read_mat(&golden("svhn_golden_plain.mat"))?;
    let y = golden.iter().find(|v| v.name == "y").expect("y");
    assert_eq!((y.class, y.to_f64()), (9, Some(vec![3.0, 10.0])));
    Ok(())
}
