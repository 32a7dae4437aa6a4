//! A minimal reader of MATLAB v5 MAT-files: the subset SVHN's `*_32x32.mat` files and
//! the ILSVRC-2012 devkit's `meta.mat` use.
//!
//! Format: MathWorks, "MAT-File Format" (R2024a), chapter 1. A file is a 128-byte header
//! (text starting `MATLAB 5.0 MAT-file`, 8 bytes of subsystem offset, the version
//! `0x0100` and the endian mark `IM` for little-endian or `MI` for big-endian), then
//! data elements. Each element has an 8-byte tag (type `u32`, byte count `u32`) and is
//! padded to 8 bytes; a tag whose upper 16 bits are non-zero is the *small* format:
//! type in the low 16 bits, byte count in the high 16, at most 4 bytes of data in the
//! tag's second word. A top-level element is either `miMATRIX` (14), an array, or
//! `miCOMPRESSED` (15), a zlib stream that holds one `miMATRIX` (what MATLAB writes by
//! default, and what the SVHN files hold).
//!
//! An `miMATRIX` holds sub-elements: array flags (class in the low byte; complex,
//! global and logical bits), dimensions (`miINT32`), name (`miINT8`), then by class:
//! the real part of a numeric array, column-major, in any numeric storage type (MATLAB
//! stores a `double` array of small integers as `miUINT8`); the characters of a `char`
//! array; for a struct array the field-name length, the names, and one `miMATRIX` per
//! element and field; for a cell array one `miMATRIX` per element. Sparse, object and
//! complex arrays are kept as [`MatData::Unsupported`].
//!
//! The reader never panics on malformed input: every problem is an [`Error`] naming
//! the file.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use flate2::read::ZlibDecoder;

use crate::Error;
use crate::error::MatProblem;

/// How deep struct and cell arrays may nest.
pub const MAX_DEPTH: usize = 16;

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;
const MI_UTF8: u32 = 16;
const MI_UTF16: u32 = 17;

const MX_CELL: u8 = 1;
const MX_STRUCT: u8 = 2;
const MX_CHAR: u8 = 4;

/// Storage type of a numeric array's elements (not its MATLAB class).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumericType {
    /// `miINT8`.
    I8,
    /// `miUINT8`.
    U8,
    /// `miINT16`.
    I16,
    /// `miUINT16`.
    U16,
    /// `miINT32`.
    I32,
    /// `miUINT32`.
    U32,
    /// `miINT64`.
    I64,
    /// `miUINT64`.
    U64,
    /// `miSINGLE`.
    F32,
    /// `miDOUBLE`.
    F64,
}

impl NumericType {
    fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            MI_INT8 => NumericType::I8,
            MI_UINT8 => NumericType::U8,
            MI_INT16 => NumericType::I16,
            MI_UINT16 => NumericType::U16,
            MI_INT32 => NumericType::I32,
            MI_UINT32 => NumericType::U32,
            MI_INT64 => NumericType::I64,
            MI_UINT64 => NumericType::U64,
            MI_SINGLE => NumericType::F32,
            MI_DOUBLE => NumericType::F64,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            NumericType::I8 | NumericType::U8 => 1,
            NumericType::I16 | NumericType::U16 => 2,
            NumericType::I32 | NumericType::U32 | NumericType::F32 => 4,
            NumericType::I64 | NumericType::U64 | NumericType::F64 => 8,
        }
    }
}

/// The contents of one array.
#[derive(Debug, Clone, PartialEq)]
pub enum MatData {
    /// A real numeric or logical array: raw element bytes, column-major.
    Numeric {
        /// How each element is stored.
        storage: NumericType,
        /// `len · storage.size()` bytes in the file's byte order.
        bytes: Vec<u8>,
        /// Whether the file is big-endian (`MI`).
        big_endian: bool,
    },
    /// A `char` array, its characters in column-major order.
    Char(String),
    /// A struct array: field names, then for each element (column-major) one array per
    /// field, in the order of the names.
    Struct {
        /// The field names.
        fields: Vec<String>,
        /// `elements[i][f]` is field `fields[f]` of element `i`.
        elements: Vec<Vec<MatArray>>,
    },
    /// A cell array, its cells in column-major order.
    Cell(Vec<MatArray>),
    /// A class this reader does not decode (sparse, object, function handle, complex).
    Unsupported,
}

/// One array: a top-level variable, a struct field or a cell.
#[derive(Debug, Clone, PartialEq)]
pub struct MatArray {
    /// The variable name (empty for struct fields and cells).
    pub name: String,
    /// The MATLAB class code (`mxDOUBLE_CLASS` = 6, `mxUINT8_CLASS` = 9, …).
    pub class: u8,
    /// Dimensions, at least two.
    pub dims: Vec<usize>,
    /// The contents.
    pub data: MatData,
}

impl MatArray {
    /// Number of elements: the product of the dimensions.
    pub fn len(&self) -> usize {
        self.dims.iter().product()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements as `f64`, column-major, whatever their storage type; `None` unless
    /// the array is numeric.
    pub fn to_f64(&self) -> Option<Vec<f64>> {
        let MatData::Numeric {
            storage,
            bytes,
            big_endian,
        } = &self.data
        else {
            return None;
        };
        let size = storage.size();
        Some(
            bytes
                .chunks_exact(size)
                .map(|chunk| {
                    let mut word = [0u8; 8];
                    word[..size].copy_from_slice(chunk);
                    if *big_endian {
                        word[..size].reverse();
                    }
                    let [b0, b1, b2, b3, ..] = word;
                    match storage {
                        NumericType::I8 => f64::from(b0 as i8),
                        NumericType::U8 => f64::from(b0),
                        NumericType::I16 => f64::from(i16::from_le_bytes([b0, b1])),
                        NumericType::U16 => f64::from(u16::from_le_bytes([b0, b1])),
                        NumericType::I32 => f64::from(i32::from_le_bytes([b0, b1, b2, b3])),
                        NumericType::U32 => f64::from(u32::from_le_bytes([b0, b1, b2, b3])),
                        NumericType::F32 => f64::from(f32::from_le_bytes([b0, b1, b2, b3])),
                        NumericType::I64 => i64::from_le_bytes(word) as f64,
                        NumericType::U64 => u64::from_le_bytes(word) as f64,
                        NumericType::F64 => f64::from_le_bytes(word),
                    }
                })
                .collect(),
        )
    }

    /// The characters of a `char` array.
    pub fn as_str(&self) -> Option<&str> {
        match &self.data {
            MatData::Char(text) => Some(text),
            _ => None,
        }
    }

    /// Field `name` of element `index` of a struct array.
    pub fn field(&self, index: usize, name: &str) -> Option<&MatArray> {
        let MatData::Struct { fields, elements } = &self.data else {
            return None;
        };
        let f = fields.iter().position(|field| field == name)?;
        elements.get(index)?.get(f)
    }

    /// A one-line description for error messages, e.g. `class 9 [32, 32, 3, 2]`.
    pub fn describe(&self) -> String {
        format!("class {} {:?}", self.class, self.dims)
    }
}

/// Reads every variable of a MAT v5 file, decompressing `miCOMPRESSED` elements as it
/// streams through the file.
///
/// # Errors
///
/// [`Error::Io`]; [`Error::BadMat`] with [`MatProblem::NotMatV5`] for a wrong header
/// (the "magic number" of the format) or [`MatProblem::Malformed`];
/// [`Error::Truncated`] if an element runs past the end of the file or of its
/// compressed stream; [`Error::Zlib`] for a corrupt compressed element.
pub fn read_mat(path: &Path) -> Result<Vec<MatArray>, Error> {
    let file = File::open(path).map_err(|source| Error::io(path, source))?;
    parse_mat(path, BufReader::with_capacity(1 << 20, file))
}

/// Parses a MAT v5 stream; `path` only names it in errors. See [`read_mat`].
///
/// # Errors
///
/// As [`read_mat`].
pub fn parse_mat(path: &Path, mut reader: impl Read) -> Result<Vec<MatArray>, Error> {
    let mut header = Vec::with_capacity(128);
    read_up_to(path, &mut reader, 128, &mut header)?;
    let big_endian = match header.get(126..128) {
        _ if !header.starts_with(b"MATLAB 5.0") => return Err(bad(path, MatProblem::NotMatV5)),
        Some(b"IM") => false,
        Some(b"MI") => true,
        _ => return Err(bad(path, MatProblem::NotMatV5)),
    };
    let order = Order { big_endian };
    let mut variables = Vec::new();
    let mut offset = 128u64;
    loop {
        let mut tag = Vec::with_capacity(8);
        let got = read_up_to(path, &mut reader, 8, &mut tag)?;
        if got == 0 {
            return Ok(variables);
        }
        if got < 8 {
            return Err(truncated(path, offset + 8, offset + got as u64));
        }
        let (kind, size) = (order.u32(&tag[..4]), order.u32(&tag[4..]));
        let size64 = u64::from(size);
        let mut body = Vec::new();
        match kind {
            MI_COMPRESSED => {
                let mut compressed = (&mut reader).take(size64);
                let mut decoder = ZlibDecoder::new(TrackedRead::new(&mut compressed));
                let result = decoder.read_to_end(&mut body);
                let (used, failed) = (decoder.get_ref().count, decoder.get_ref().failed);
                // Whatever the decoder did not consume still belongs to this element.
                let rest = std::io::copy(&mut compressed, &mut std::io::sink())
                    .map_err(|source| Error::io(path, source))?;
                if used + rest < size64 {
                    return Err(truncated(
                        path,
                        offset + 8 + size64,
                        offset + 8 + used + rest,
                    ));
                }
                if let Err(source) = result {
                    return Err(if failed {
                        Error::io(path, source)
                    } else {
                        Error::Zlib {
                            path: path.to_owned(),
                            source,
                        }
                    });
                }
                offset += 8 + size64;
                let inner = Order { big_endian };
                if let Some(array) = parse_top_matrix(path, body, inner)? {
                    variables.push(array);
                }
            }
            _ => {
                let padded = size64.div_ceil(8) * 8;
                let got = read_up_to(path, &mut reader, padded, &mut body)?;
                if (got as u64) < size64 {
                    return Err(truncated(
                        path,
                        offset + 8 + size64,
                        offset + 8 + got as u64,
                    ));
                }
                body.truncate(size as usize);
                if kind == MI_MATRIX {
                    let mut element = Vec::with_capacity(8 + body.len());
                    element.extend_from_slice(&tag);
                    element.append(&mut body);
                    if let Some(array) = parse_top_matrix(path, element, order)? {
                        variables.push(array);
                    }
                }
                // Other top-level element types carry no variable: skip them.
                offset += 8 + got as u64;
            }
        }
    }
}

/// Reads until `limit` bytes or end of stream; returns how many were read.
fn read_up_to(
    path: &Path,
    reader: impl Read,
    limit: u64,
    out: &mut Vec<u8>,
) -> Result<usize, Error> {
    reader
        .take(limit)
        .read_to_end(out)
        .map_err(|source| Error::io(path, source))
}

/// A reader that counts bytes and remembers whether the underlying stream failed, to
/// tell I/O errors from corrupt compressed data.
struct TrackedRead<R> {
    inner: R,
    count: u64,
    failed: bool,
}

impl<R> TrackedRead<R> {
    fn new(inner: R) -> Self {
        TrackedRead {
            inner,
            count: 0,
            failed: false,
        }
    }
}

impl<R: Read> Read for TrackedRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let result = self.inner.read(buf);
        match &result {
            Ok(n) => self.count += *n as u64,
            Err(_) => self.failed = true,
        }
        result
    }
}

#[derive(Clone, Copy)]
struct Order {
    big_endian: bool,
}

impl Order {
    fn u32(self, b: &[u8]) -> u32 {
        let word = [b[0], b[1], b[2], b[3]];
        if self.big_endian {
            u32::from_be_bytes(word)
        } else {
            u32::from_le_bytes(word)
        }
    }
}

fn bad(path: &Path, problem: MatProblem) -> Error {
    Error::BadMat {
        path: path.to_owned(),
        problem,
    }
}

fn truncated(path: &Path, expected_bytes: u64, found_bytes: u64) -> Error {
    Error::Truncated {
        path: path.to_owned(),
        expected_bytes,
        found_bytes,
    }
}

/// One sub-element: its type and the range of its data in the buffer.
struct Element {
    kind: u32,
    start: usize,
    end: usize,
}

/// A cursor over the bytes of one `miMATRIX` (tag included).
struct Cursor<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    pos: usize,
    order: Order,
}

impl Cursor<'_> {
    fn malformed(&self, what: &'static str) -> Error {
        bad(
            self.path,
            MatProblem::Malformed {
                offset: self.pos as u64,
                what,
            },
        )
    }

    /// Reads the next element's tag, returning its data range and moving past its
    /// padding.
    fn element(&mut self) -> Result<Element, Error> {
        let tag = self
            .bytes
            .get(self.pos..self.pos + 8)
            .ok_or_else(|| truncated(self.path, self.pos as u64 + 8, self.bytes.len() as u64))?;
        let first = self.order.u32(&tag[..4]);
        if first >> 16 != 0 {
            // Small data element: at most 4 bytes in the tag's second word.
            let (kind, size) = (first & 0xFFFF, (first >> 16) as usize);
            if size > 4 {
                return Err(self.malformed("small data element longer than 4 bytes"));
            }
            let start = self.pos + 4;
            self.pos += 8;
            return Ok(Element {
                kind,
                start,
                end: start + size,
            });
        }
        let size = self.order.u32(&tag[4..]) as usize;
        let start = self.pos + 8;
        let end = start
            .checked_add(size)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| {
                truncated(
                    self.path,
                    start as u64 + size as u64,
                    self.bytes.len() as u64,
                )
            })?;
        self.pos = start + size.div_ceil(8) * 8;
        Ok(Element {
            kind: first,
            start,
            end,
        })
    }

    fn expect(&mut self, kind: u32, what: &'static str) -> Result<Element, Error> {
        let element = self.element()?;
        if element.kind == kind {
            Ok(element)
        } else {
            Err(self.malformed(what))
        }
    }
}

/// The parts of an `miMATRIX` read before its data.
struct Header {
    class: u8,
    complex: bool,
    dims: Vec<usize>,
    name: String,
    len: usize,
}

/// Parses a top-level `miMATRIX`, moving a large numeric payload out of `buffer`
/// without copying it. `Ok(None)` for an empty element.
fn parse_top_matrix(
    path: &Path,
    mut buffer: Vec<u8>,
    order: Order,
) -> Result<Option<MatArray>, Error> {
    let mut cursor = Cursor {
        path,
        bytes: &buffer,
        pos: 0,
        order,
    };
    let outer = cursor.element()?;
    if outer.kind != MI_MATRIX {
        return Err(cursor.malformed("expected an miMATRIX element"));
    }
    if outer.start == outer.end {
        return Ok(None);
    }
    let mut inner = Cursor {
        path,
        bytes: &buffer[..outer.end],
        pos: outer.start,
        order,
    };
    let header = parse_header(&mut inner)?;
    if is_numeric(&header) {
        let (storage, start, end) = numeric_range(&mut inner, &header)?;
        buffer.truncate(end);
        buffer.drain(..start);
        return Ok(Some(MatArray {
            name: header.name,
            class: header.class,
            dims: header.dims,
            data: MatData::Numeric {
                storage,
                bytes: buffer,
                big_endian: order.big_endian,
            },
        }));
    }
    let data = parse_body(&mut inner, &header, 1)?;
    Ok(Some(MatArray {
        name: header.name,
        class: header.class,
        dims: header.dims,
        data,
    }))
}

fn parse_header(cursor: &mut Cursor<'_>) -> Result<Header, Error> {
    let flags = cursor.expect(MI_UINT32, "array flags must be miUINT32")?;
    if flags.end - flags.start < 8 {
        return Err(cursor.malformed("array flags shorter than 8 bytes"));
    }
    let word = cursor
        .order
        .u32(&cursor.bytes[flags.start..flags.start + 4]);
    let (class, complex) = ((word & 0xFF) as u8, word & 0x800 != 0);
    let dims_element = cursor.expect(MI_INT32, "dimensions must be miINT32")?;
    let raw = &cursor.bytes[dims_element.start..dims_element.end];
    if raw.len() < 8 || !raw.len().is_multiple_of(4) {
        return Err(cursor.malformed("fewer than two dimensions"));
    }
    let mut dims = Vec::with_capacity(raw.len() / 4);
    for chunk in raw.chunks_exact(4) {
        let d = cursor.order.u32(chunk);
        let d = usize::try_from(d)
            .ok()
            .filter(|_| d <= i32::MAX as u32)
            .ok_or_else(|| cursor.malformed("negative dimension"))?;
        dims.push(d);
    }
    let len = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| cursor.malformed("dimensions overflow"))?;
    let name_element = cursor.expect(MI_INT8, "array name must be miINT8")?;
    let name =
        String::from_utf8_lossy(&cursor.bytes[name_element.start..name_element.end]).into_owned();
    Ok(Header {
        class,
        complex,
        dims,
        name,
        len,
    })
}

/// Whether the array is a real numeric or logical array (`mxDOUBLE_CLASS` = 6 …
/// `mxUINT64_CLASS` = 15).
fn is_numeric(header: &Header) -> bool {
    (6..=15).contains(&header.class) && !header.complex
}

/// The storage type and range of a numeric array's real part, checked against its
/// dimensions.
fn numeric_range(
    cursor: &mut Cursor<'_>,
    header: &Header,
) -> Result<(NumericType, usize, usize), Error> {
    let real = cursor.element()?;
    let storage = NumericType::from_code(real.kind)
        .ok_or_else(|| cursor.malformed("unknown numeric storage type"))?;
    if Some(real.end - real.start) != header.len.checked_mul(storage.size()) {
        return Err(cursor.malformed("real part does not match the dimensions"));
    }
    Ok((storage, real.start, real.end))
}

/// Parses a nested `miMATRIX` (a struct field or a cell) at the cursor.
fn parse_nested(cursor: &mut Cursor<'_>, depth: usize) -> Result<MatArray, Error> {
    if depth > MAX_DEPTH {
        return Err(bad(cursor.path, MatProblem::TooDeep { limit: MAX_DEPTH }));
    }
    let outer = cursor.expect(MI_MATRIX, "struct fields and cells must be miMATRIX")?;
    if outer.start == outer.end {
        // MATLAB writes an empty field as an miMATRIX of no bytes.
        return Ok(MatArray {
            name: String::new(),
            class: 0,
            dims: vec![0, 0],
            data: MatData::Unsupported,
        });
    }
    let mut inner = Cursor {
        path: cursor.path,
        bytes: &cursor.bytes[..outer.end],
        pos: outer.start,
        order: cursor.order,
    };
    let header = parse_header(&mut inner)?;
    let data = parse_body(&mut inner, &header, depth)?;
    Ok(MatArray {
        name: header.name,
        class: header.class,
        dims: header.dims,
        data,
    })
}

/// Parses what follows the name of an `miMATRIX`, by class.
fn parse_body(cursor: &mut Cursor<'_>, header: &Header, depth: usize) -> Result<MatData, Error> {
    if is_numeric(header) {
        let (storage, start, end) = numeric_range(cursor, header)?;
        return Ok(MatData::Numeric {
            storage,
            bytes: cursor.bytes[start..end].to_vec(),
            big_endian: cursor.order.big_endian,
        });
    }
    match header.class {
        MX_CHAR => {
            let element = cursor.element()?;
            let raw = &cursor.bytes[element.start..element.end];
            let text = match element.kind {
                MI_UTF8 | MI_UINT8 | MI_INT8 => String::from_utf8_lossy(raw).into_owned(),
                MI_UINT16 | MI_UTF16 => {
                    let units: Vec<u16> = raw
                        .chunks_exact(2)
                        .map(|b| {
                            if cursor.order.big_endian {
                                u16::from_be_bytes([b[0], b[1]])
                            } else {
                                u16::from_le_bytes([b[0], b[1]])
                            }
                        })
                        .collect();
                    String::from_utf16_lossy(&units)
                }
                _ => return Err(cursor.malformed("unknown character storage type")),
            };
            Ok(MatData::Char(text))
        }
        MX_STRUCT => {
            let length = cursor.expect(MI_INT32, "field-name length must be miINT32")?;
            if length.end - length.start != 4 {
                return Err(cursor.malformed("field-name length must be one miINT32"));
            }
            let width = cursor.order.u32(&cursor.bytes[length.start..length.end]) as usize;
            let names = cursor.expect(MI_INT8, "field names must be miINT8")?;
            let raw = &cursor.bytes[names.start..names.end];
            if width == 0 || !raw.len().is_multiple_of(width) {
                return Err(cursor.malformed("field names do not match their length"));
            }
            let fields: Vec<String> = raw
                .chunks_exact(width)
                .map(|name| {
                    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
                    String::from_utf8_lossy(&name[..end]).into_owned()
                })
                .collect();
            let mut elements = Vec::new();
            // With no fields there is nothing to read per element (and a bogus length
            // must not make us loop).
            let count = if fields.is_empty() { 0 } else { header.len };
            for _ in 0..count {
                let mut values = Vec::with_capacity(fields.len());
                for _ in 0..fields.len() {
                    values.push(parse_nested(cursor, depth + 1)?);
                }
                elements.push(values);
            }
            Ok(MatData::Struct { fields, elements })
        }
        MX_CELL => {
            let mut cells = Vec::new();
            for _ in 0..header.len {
                cells.push(parse_nested(cursor, depth + 1)?);
            }
            Ok(MatData::Cell(cells))
        }
        _ => Ok(MatData::Unsupported),
    }
}
