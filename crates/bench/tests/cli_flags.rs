//! Walks the flag table of `docs/cli-flags.md`: every rejected value fails
//! before any work, with an error naming the field.

use std::path::Path;
use std::process::Command;

/// `(flag, error names, rejected examples)` from the table's rows.
fn table() -> Vec<(String, String, Vec<String>)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/cli-flags.md");
    let text = std::fs::read_to_string(&path).expect("docs/cli-flags.md");
    let strip = |s: &str| s.trim().trim_matches('`').to_owned();
    text.lines()
        .filter(|l| l.starts_with("| `--"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').collect();
            assert_eq!(cells.len(), 4, "row {l}");
            let first = cells[0].split(',').next().unwrap_or("");
            let flag = strip(first)
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_owned();
            let rejected = cells[3].split(';').map(strip).collect();
            (flag, strip(cells[2]), rejected)
        })
        .collect()
}

#[test]
fn every_rejected_value_fails_before_any_work_naming_its_field() {
    let rows = table();
    assert!(rows.len() >= 20, "{} rows", rows.len());
    let dir = tempfile::tempdir().expect("tempdir");
    // No data here: a value that slipped through validation would fail
    // reading MNIST instead, and the message check below would catch it.
    let data = dir.path().join("no-data");
    let mut failures = Vec::new();
    for (flag, names, rejected) in rows {
        for example in rejected {
            let mut words = example.split_whitespace();
            let mut args: Vec<String> = vec!["train".into(), "--quiet".into()];
            // `--track-noise-scale` is a switch: its examples are other flags.
            if flag == "--track-noise-scale" {
                args.push(flag.clone());
            } else {
                args.push(flag.clone());
                args.push(words.next().unwrap_or_default().into());
            }
            args.extend(words.map(str::to_owned));
            if flag != "--out" {
                args.push("--out".into());
                args.push(dir.path().join("out/results.json").display().to_string());
            }
            let out = Command::new(env!("CARGO_BIN_EXE_bigbatch"))
                .args(&args)
                .arg("--data-dir")
                .arg(&data)
                .current_dir(dir.path())
                .env("NO_COLOR", "1")
                .env_remove("RUST_LOG")
                .env_remove("BIGBATCH_THREADS")
                .output()
                .expect("runs");
            let stderr = String::from_utf8_lossy(&out.stderr);
            let named = stderr.contains(&names);
            let no_run =
                !stderr.contains("training") && !dir.path().join("out/results.json").exists();
            if out.status.success() || !named || !no_run {
                failures.push(format!("{args:?}: status {}, stderr: {stderr}", out.status));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
