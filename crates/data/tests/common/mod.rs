//! Test helpers shared by the integration tests: a MAT v5 writer written from the
//! format specification (independent of the crate's reader), and small file utilities.

#![allow(dead_code)]

use std::io::Write;

use flate2::Compression;
use flate2::write::ZlibEncoder;

/// An array to write: name, MATLAB class code, dimensions, contents.
pub enum Value {
    /// Numeric: class code (6 double, 9 uint8, …), storage type code (9 miDOUBLE, 2
    /// miUINT8, …) and the raw little-endian element bytes, column-major.
    Numeric {
        class: u8,
        storage: u32,
        bytes: Vec<u8>,
    },
    /// A `char` row vector stored as miUTF16 code units (what MATLAB writes).
    Char(String),
    /// A struct array: field names, then per element one value per field.
    Struct {
        fields: Vec<String>,
        elements: Vec<Vec<(Vec<u32>, Value)>>,
    },
}

fn pad8(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(8) {
        out.push(0);
    }
}

/// A data element: tag, bytes, padding (the normal 8-byte-tag format).
fn element(out: &mut Vec<u8>, kind: u32, data: &[u8]) {
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    pad8(out);
}

/// A small data element (at most 4 bytes packed into the tag).
fn small_element(out: &mut Vec<u8>, kind: u32, data: &[u8]) {
    assert!(data.len() <= 4);
    out.extend_from_slice(&(kind | ((data.len() as u32) << 16)).to_le_bytes());
    let mut word = [0u8; 4];
    word[..data.len()].copy_from_slice(data);
    out.extend_from_slice(&word);
}

/// The bytes of an miMATRIX element (tag included).
pub fn matrix(name: &str, dims: &[u32], value: &Value) -> Vec<u8> {
    let mut body = Vec::new();
    let class = match value {
        Value::Numeric { class, .. } => *class,
        Value::Char(_) => 4,
        Value::Struct { .. } => 2,
    };
    let mut flags = Vec::new();
    flags.extend_from_slice(&u32::from(class).to_le_bytes());
    flags.extend_from_slice(&0u32.to_le_bytes());
    element(&mut body, 6, &flags); // miUINT32 array flags
    let dim_bytes: Vec<u8> = dims.iter().flat_map(|d| d.to_le_bytes()).collect();
    element(&mut body, 5, &dim_bytes); // miINT32 dimensions
    if name.len() <= 4 {
        small_element(&mut body, 1, name.as_bytes()); // miINT8 name
    } else {
        element(&mut body, 1, name.as_bytes());
    }
    match value {
        Value::Numeric { storage, bytes, .. } => element(&mut body, *storage, bytes),
        Value::Char(text) => {
            let units: Vec<u8> = text.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
            element(&mut body, 4, &units); // miUINT16
        }
        Value::Struct { fields, elements } => {
            let width = fields.iter().map(String::len).max().unwrap_or(0) + 1;
            small_element(&mut body, 5, &(width as u32).to_le_bytes());
            let mut names = Vec::new();
            for field in fields {
                let mut padded = field.as_bytes().to_vec();
                padded.resize(width, 0);
                names.extend(padded);
            }
            element(&mut body, 1, &names);
            for values in elements {
                for (dims, value) in values {
                    body.extend(matrix("", dims, value));
                }
            }
        }
    }
    let mut out = Vec::new();
    element(&mut out, 14, &body); // miMATRIX
    out
}

/// A whole MAT v5 file: header, then each variable, zlib-compressed (miCOMPRESSED) or
/// not.
pub fn mat_file(variables: &[(&str, Vec<u32>, Value)], compress: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut text =
        b"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024".to_vec();
    text.resize(116, b' ');
    out.extend(text);
    out.extend([0u8; 8]); // subsystem data offset
    out.extend(0x0100u16.to_le_bytes()); // version
    out.extend(b"IM"); // little-endian
    for (name, dims, value) in variables {
        let bytes = matrix(name, dims, value);
        if compress {
            let mut encoder = ZlibEncoder::new(Vec::new(), Compression::default());
            encoder.write_all(&bytes).expect("compress");
            let packed = encoder.finish().expect("compress");
            out.extend(15u32.to_le_bytes()); // miCOMPRESSED, not padded
            out.extend((packed.len() as u32).to_le_bytes());
            out.extend(packed);
        } else {
            out.extend(bytes);
        }
    }
    out
}

/// SVHN's `X` and `y` for `count` images, pixel `(r, c, k, n)` = `svhn_pixel(r, c, k, n)`,
/// labels as doubles.
pub fn svhn_variables(labels: &[f64]) -> Vec<(&'static str, Vec<u32>, Value)> {
    let n = labels.len();
    let mut x = vec![0u8; 3072 * n];
    for i in 0..n {
        for k in 0..3 {
            for c in 0..32 {
                for r in 0..32 {
                    x[r + 32 * c + 1024 * k + 3072 * i] = svhn_pixel(r, c, k, i);
                }
            }
        }
    }
    vec![
        (
            "X",
            vec![32, 32, 3, n as u32],
            Value::Numeric {
                class: 9,
                storage: 2,
                bytes: x,
            },
        ),
        (
            "y",
            vec![n as u32, 1],
            Value::Numeric {
                class: 6,
                storage: 9,
                bytes: labels.iter().flat_map(|v| v.to_le_bytes()).collect(),
            },
        ),
    ]
}

/// The synthetic SVHN pixel at row `r`, column `c`, channel `k` of image `n`.
pub fn svhn_pixel(r: usize, c: usize, k: usize, n: usize) -> u8 {
    ((r * 7 + c * 3 + k * 50 + n * 11) % 256) as u8
}

/// A devkit-style `meta.mat` with `synsets` holding `wnids[i]` at ILSVRC2012_ID `i+1`,
/// plus one non-leaf synset (ID 1001) as in the real file.
pub fn meta_mat(wnids: &[&str]) -> Vec<u8> {
    let mut elements = Vec::new();
    let ids = (1..=wnids.len() as u32 + 1).map(f64::from);
    for (id, wnid) in ids.zip(wnids.iter().copied().chain(["n00001740"])) {
        let children = if wnid == "n00001740" { 2.0f64 } else { 0.0 };
        elements.push(vec![
            (
                vec![1, 1],
                Value::Numeric {
                    class: 6,
                    storage: 2, // MATLAB stores small doubles as miUINT8
                    bytes: vec![id as u8],
                },
            ),
            (vec![1, wnid.len() as u32], Value::Char(wnid.to_owned())),
            (vec![1, 5], Value::Char("words".to_owned())),
            (
                vec![1, 1],
                Value::Numeric {
                    class: 6,
                    storage: 9,
                    bytes: children.to_le_bytes().to_vec(),
                },
            ),
        ]);
    }
    let count = elements.len() as u32;
    let synsets = Value::Struct {
        fields: vec![
            "ILSVRC2012_ID".into(),
            "WNID".into(),
            "words".into(),
            "num_children".into(),
        ],
        elements,
    };
    mat_file(&[("synsets", vec![count, 1], synsets)], true)
}
