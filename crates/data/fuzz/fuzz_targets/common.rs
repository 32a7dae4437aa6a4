#![allow(dead_code)]
// Shared by the targets that need a file: writes the input to a temporary file.
use std::path::PathBuf;

pub fn with_file<T>(data: &[u8], name: &str, parse: impl FnOnce(&std::path::Path) -> T) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path: PathBuf = dir.path().join(name);
    std::fs::write(&path, data).expect("write");
    let _ = parse(&path);
}
