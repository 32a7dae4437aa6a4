//! Prints statistics of MNIST-format data: class counts and pixel mean/std per split.
//!
//! ```sh
//! cargo run -p bigbatch-data --example mnist_stats                 # <data-dir>/mnist
//! cargo run -p bigbatch-data --example mnist_stats -- some/dir     # IDX files in some/dir
//! cargo run -p bigbatch-data --example mnist_stats -- mnist_5k.csv.gz
//! ```
//!
//! The data directory is resolved by `bigbatch_data::data_dir` (`BIGBATCH_DATA_DIR`,
//! else `./data`). Fetch the files first with `cargo xtask fetch mnist`.

// An example is a small program: printing is its job.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::ExitCode;

use bigbatch_data::{ImageClassification, Normalization, Split, mnist};

fn describe(name: &str, data: &ImageClassification) -> Result<(), bigbatch_data::Error> {
    let stats = Normalization::fit(data)?;
    println!(
        "{name:>5}: {} images of {}, pixel mean {:.4}, std {:.4}",
        data.len(),
        data.shape(),
        stats.mean[0],
        stats.std[0]
    );
    let counts: Vec<String> = data
        .class_counts()
        .iter()
        .enumerate()
        .map(|(class, count)| format!("{class}:{count}"))
        .collect();
    println!("       per class {}", counts.join(" "));
    Ok(())
}

fn run() -> Result<(), bigbatch_data::Error> {
    let arg = std::env::args_os().nth(1).map(PathBuf::from);
    match arg {
        Some(path) if path.is_file() => describe("csv", &mnist::read_csv(&path)?),
        Some(dir) => Split::ALL
            .iter()
            .try_for_each(|&split| describe(split.name(), &mnist::load(&dir, split)?)),
        None => {
            let dir = bigbatch_data::data_dir(None).join(mnist::Variant::Digits.dir_name());
            Split::ALL
                .iter()
                .try_for_each(|&split| describe(split.name(), &mnist::load(&dir, split)?))
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("error: {error}");
            }
            ExitCode::FAILURE
        }
    }
}
