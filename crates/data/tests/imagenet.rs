//! ImageNet-style folders of JPEGs written by the test: the generic image folder, the
//! devkit's flat validation layout, validation of a placed copy, the transforms and
//! the parallel pipeline.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bigbatch_data::imagenet::{self, Issue};
use bigbatch_data::pipeline::image_batches;
use bigbatch_data::vision::image_folder::{ImageFolder, Transform, decode_jpeg};
use bigbatch_data::{Batches, Error, Normalization};
use image::codecs::jpeg::JpegEncoder;

/// Inputs and labels of one batch.
type Batch = (Vec<f32>, Vec<u32>);

const WNIDS: [&str; 3] = ["n01440764", "n01443537", "n01484850"];

/// A `width × height` JPEG (quality 100) of a smooth pattern seeded by `seed`.
fn jpeg(width: u32, height: u32, seed: u32) -> Vec<u8> {
    let rgb = pattern(width, height, seed);
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 100)
        .encode(&rgb, width, height, image::ExtendedColorType::Rgb8)
        .expect("encode JPEG");
    out
}

fn pattern(width: u32, height: u32, seed: u32) -> Vec<u8> {
    (0..height)
        .flat_map(|y| {
            (0..width).flat_map(move |x| {
                [
                    (x * 255 / width.max(2)) as u8,
                    (y * 255 / height.max(2)) as u8,
                    (seed * 60 + 20) as u8,
                ]
            })
        })
        .collect()
}

fn write(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, bytes).expect("write");
}

/// `train/<wnid>/` with two images per class, a stray non-JPEG, and a flat `val/` with
/// the devkit (ground truth in val-file order; ILSVRC2012_IDs deliberately not in
/// sorted-WNID order).
fn place(root: &Path) {
    for (c, wnid) in WNIDS.iter().enumerate() {
        for i in 0..2 {
            let name = format!("{wnid}_{i}.JPEG");
            write(
                &root.join("train").join(wnid).join(name),
                &jpeg(40 + 8 * i, 30, c as u32),
            );
        }
    }
    write(
        &root.join("train").join(WNIDS[0]).join("notes.txt"),
        b"not an image",
    );
    // ID 1 = WNIDS[2], ID 2 = WNIDS[0], ID 3 = WNIDS[1].
    let by_id = [WNIDS[2], WNIDS[0], WNIDS[1]];
    let data = root.join(imagenet::DEVKIT_DATA);
    write(&data.join("meta.mat"), &common::meta_mat(&by_id));
    // Four val images with IDs 2, 1, 3, 1 → labels 0, 2, 1, 2.
    write(&data.join(imagenet::GROUND_TRUTH), b"2\n1\n3\n1\n");
    for (i, id) in [2u32, 1, 3, 1].iter().enumerate() {
        let name = format!("ILSVRC2012_val_{:08}.JPEG", i + 1);
        write(&root.join("val").join(name), &jpeg(32, 24, *id));
    }
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

#[test]
fn decodes_jpegs_pixel_by_pixel() -> Result<(), Error> {
    let dir = tempdir();
    let path = dir.path().join("a.jpg");
    write(&path, &jpeg(37, 23, 1));
    let (rgb, width, height) = decode_jpeg(&path)?;
    assert_eq!((width, height), (37, 23));
    // Quality-100 JPEG with chroma subsampling: each pixel within a few levels.
    let expected = pattern(37, 23, 1);
    for (i, (a, b)) in rgb.iter().zip(&expected).enumerate() {
        assert!(a.abs_diff(*b) <= 6, "byte {i}: {a} vs {b}");
    }
    Ok(())
}

#[test]
fn train_folder_and_flat_val_with_devkit() -> Result<(), Error> {
    let dir = tempdir();
    place(dir.path());
    let train = imagenet::train(dir.path())?;
    assert_eq!(train.classes(), WNIDS);
    assert_eq!(train.len(), 6);
    let labels: Vec<u32> = (0..6).map(|i| train.label(i)).collect();
    assert_eq!(labels, [0, 0, 1, 1, 2, 2]);

    let val = imagenet::val(dir.path())?;
    assert_eq!(val.classes(), WNIDS);
    let labels: Vec<u32> = (0..val.len()).map(|i| val.label(i)).collect();
    assert_eq!(labels, [0, 2, 1, 2]);

    // The same images sorted into val/<wnid>/ give the same labels.
    let sorted = tempdir();
    for (path, label) in val.samples() {
        let name = path.file_name().expect("name");
        let target = sorted
            .path()
            .join("val")
            .join(WNIDS[*label as usize])
            .join(name);
        write(&target, &fs::read(path).expect("read"));
    }
    let resorted = imagenet::val(sorted.path())?;
    let mut a: Vec<(PathBuf, u32)> = resorted
        .samples()
        .iter()
        .map(|(p, l)| (PathBuf::from(p.file_name().expect("name")), *l))
        .collect();
    a.sort();
    assert_eq!(a.iter().map(|(_, l)| *l).collect::<Vec<_>>(), [0, 2, 1, 2]);
    Ok(())
}

#[test]
fn validate_lists_every_problem() -> Result<(), Error> {
    let dir = tempdir();
    place(dir.path());
    let report = imagenet::validate(dir.path(), (3, 6, 4))?;
    assert!(report.is_complete(), "{:?}", report.issues);
    assert_eq!(
        (report.train_classes, report.train_images, report.val_images),
        (3, 6, 4)
    );

    // Against the real counts, with an empty class folder and no val/.
    fs::create_dir_all(dir.path().join("train/n99999999")).expect("mkdir");
    fs::remove_dir_all(dir.path().join("val")).expect("rm");
    let report = imagenet::validate(dir.path(), (1000, 1_281_167, 50_000))?;
    let text: Vec<String> = report.issues.iter().map(ToString::to_string).collect();
    assert!(
        matches!(report.issues[0], Issue::EmptyClass { ref path } if path.ends_with("n99999999"))
    );
    assert!(matches!(
        report.issues[1],
        Issue::ClassCount {
            expected: 1000,
            found: 4,
            ..
        }
    ));
    assert!(matches!(
        report.issues[2],
        Issue::ImageCount {
            expected: 1_281_167,
            found: 6,
            ..
        }
    ));
    assert!(matches!(report.issues[3], Issue::Missing { ref path } if path.ends_with("val")));
    assert!(text[3].ends_with("val is missing"), "{text:?}");

    // The devkit's ground truth must have one line per image.
    place(dir.path());
    write(
        &dir.path()
            .join(imagenet::DEVKIT_DATA)
            .join(imagenet::GROUND_TRUTH),
        b"1\n2\n",
    );
    assert!(matches!(
        imagenet::val(dir.path()),
        Err(Error::CountMismatch {
            image_count: 4,
            label_count: 2,
            ..
        })
    ));
    write(
        &dir.path()
            .join(imagenet::DEVKIT_DATA)
            .join(imagenet::GROUND_TRUTH),
        b"1\nx\n",
    );
    assert!(matches!(
        imagenet::val(dir.path()),
        Err(Error::BadTextLine { line: 2, .. })
    ));

    let nowhere = dir.path().join("nowhere");
    assert!(matches!(
        imagenet::validate(&nowhere, (1, 1, 1)),
        Err(Error::MissingFile { .. })
    ));
    assert!(matches!(
        imagenet::train(&nowhere),
        Err(Error::MissingFile { .. })
    ));
    Ok(())
}

#[test]
fn unreadable_jpegs_are_typed_errors_naming_the_file() {
    let dir = tempdir();
    let good = jpeg(16, 16, 0);
    for (name, bytes) in [
        ("garbage.jpg", b"definitely not a jpeg".to_vec()),
        ("truncated.jpg", good[..good.len() / 3].to_vec()),
        ("empty.jpg", Vec::new()),
    ] {
        let path = dir.path().join(name);
        write(&path, &bytes);
        let error = decode_jpeg(&path).expect_err(name);
        assert!(
            matches!(error, Error::Image { path: ref p, .. } if p == &path),
            "{name}: {error}"
        );
        assert!(error.to_string().contains(name));
    }
    let missing = dir.path().join("missing.jpg");
    assert!(matches!(decode_jpeg(&missing), Err(Error::Io { .. })));
}

#[test]
fn transforms_have_the_right_size_and_keep_colours() -> Result<(), Error> {
    let dir = tempdir();
    let path = dir.path().join("flat.jpg");
    // A constant colour survives any crop and resize.
    let flat: Vec<u8> = (0..60 * 45).flat_map(|_| [200u8, 100, 50]).collect();
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(&mut bytes, 100)
        .encode(&flat, 60, 45, image::ExtendedColorType::Rgb8)
        .expect("encode");
    write(&path, &bytes);
    let folder = ImageFolder::from_samples(vec!["x".into()], vec![(path, 0)])?;
    let mut out = Vec::new();
    for transform in [Transform::IMAGENET_TRAIN, Transform::IMAGENET_EVAL] {
        for epoch in 0..3 {
            folder.load_into(0, &transform, (5, epoch), &mut out)?;
            assert_eq!(out.len(), 224 * 224 * 3);
            for px in out.chunks_exact(3) {
                assert!(
                    px[0].abs_diff(200) <= 2 && px[1].abs_diff(100) <= 2 && px[2].abs_diff(50) <= 2
                );
            }
        }
    }
    Ok(())
}

#[test]
fn pipeline_batches_do_not_depend_on_worker_count() -> Result<(), Error> {
    let dir = tempdir();
    place(dir.path());
    let train = Arc::new(imagenet::train(dir.path())?);
    let run = |workers: usize, transform: Transform| -> Result<Vec<Batch>, Error> {
        let batches: Vec<Vec<usize>> = Batches::shuffled(train.len(), 4, 7, 1, false).collect();
        image_batches(
            Arc::clone(&train),
            batches,
            transform,
            Normalization::imagenet(),
            (7, 1),
            workers,
            2,
        )
        .map(|b| b.map(|b| (b.inputs, b.labels)))
        .collect()
    };
    for transform in [Transform::IMAGENET_TRAIN, Transform::IMAGENET_EVAL] {
        let one = run(1, transform)?;
        let two = run(2, transform)?;
        assert_eq!(one.len(), 2);
        assert_eq!(one[0].0.len(), 4 * 3 * 224 * 224);
        assert_eq!(one, two);
        // Matches the single-threaded batch assembly.
        let batch: Vec<usize> = Batches::shuffled(train.len(), 4, 7, 1, false)
            .next()
            .expect("batch");
        let (mut inputs, mut labels) = (Vec::new(), Vec::new());
        train.batch_into(
            &batch,
            &transform,
            &Normalization::imagenet(),
            (7, 1),
            &mut inputs,
            &mut labels,
        )?;
        assert_eq!((inputs, labels), one[0]);
    }
    // A broken image fails its batch with a typed error, not a panic.
    write(&train.samples()[0].0, b"broken");
    let errors = run(2, Transform::IMAGENET_EVAL).expect_err("broken image");
    assert!(matches!(errors, Error::Image { .. }));
    Ok(())
}
