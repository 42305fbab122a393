//! GGUF v2/v3 reader over a byte prefix of the file, and a writer for synthetic models.
//!
//! The browser streams a model from storage, so [`parse`] works on whatever prefix it is given:
//! when the header, metadata and tensor infos are not all inside it, it answers
//! [`Parsed::NeedMore`] with the prefix length that would get further. The total file length is
//! always known (from the file, or the store's record), and every count, length and extent read
//! from the file is checked against it before anything is allocated or indexed, so a hostile file
//! gets a [`GgufError`] naming the problem instead of a panic or a huge allocation.

mod value;
mod writer;

pub use value::{Array, Value};
pub use writer::GgufWriter;

use crate::quant::GgmlType;
use std::collections::{HashMap, HashSet};
use value::type_id;

pub const MAGIC: [u8; 4] = *b"GGUF";
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml tensors have at most four dimensions.
pub const MAX_DIMS: u32 = 4;
/// Arrays of arrays deeper than this are refused (real files nest at most once).
pub const MAX_ARRAY_DEPTH: u32 = 4;
/// The header (metadata + tensor infos) must fit in this many bytes. Llama 3's tokenizer makes
/// the largest real headers, about 10 MB; this keeps a hostile header from making the browser
/// buffer gigabytes before it is refused.
pub const MAX_HEADER_BYTES: u64 = 256 << 20;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GgufError {
    #[error("not a GGUF file: it starts with {found:02x?} instead of the magic \"GGUF\"")]
    BadMagic { found: Vec<u8> },
    #[error("unsupported GGUF version {0}: Hearth reads versions 2 and 3 (re-convert the model with a recent llama.cpp)")]
    UnsupportedVersion(u32),
    #[error("GGUF file is truncated: {what} needs {needed} bytes but the file has {file_len}")]
    Truncated { what: String, needed: u64, file_len: u64 },
    #[error("GGUF header is larger than {} MiB ({what}); the file is corrupt", MAX_HEADER_BYTES >> 20)]
    HeaderTooLarge { what: String },
    #[error("GGUF {what}: a count or length overflows")]
    Overflow { what: String },
    #[error("GGUF metadata key {key:?} has unknown value type {type_id}")]
    UnknownValueType { key: String, type_id: u32 },
    #[error("GGUF metadata key {key:?} nests arrays deeper than {MAX_ARRAY_DEPTH}")]
    NestingTooDeep { key: String },
    #[error("GGUF {what} is not valid UTF-8")]
    NonUtf8 { what: String },
    #[error("GGUF metadata key {0:?} appears twice")]
    DuplicateKey(String),
    #[error("GGUF metadata key {key:?} should be {expected}")]
    WrongType { key: String, expected: &'static str },
    #[error("GGUF general.alignment is {0}; it must be a non-zero multiple of 8")]
    BadAlignment(i128),
    #[error("tensor {tensor:?} has unknown ggml type id {type_id}")]
    UnknownTensorType { tensor: String, type_id: u32 },
    #[error("tensor {tensor:?} uses ggml type {ty}, which Hearth does not support (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K); use a file quantized to one of these")]
    UnsupportedTensorType { tensor: String, ty: GgmlType },
    #[error("tensor {tensor:?} has {n_dims} dimensions; ggml allows 1 to {MAX_DIMS}")]
    BadDimCount { tensor: String, n_dims: u32 },
    #[error("tensor {tensor:?} has a zero-sized dimension {dims:?}")]
    ZeroDim { tensor: String, dims: Vec<u64> },
    #[error("tensor {tensor:?} of type {ty}: its rows of {ne0} elements are not whole blocks")]
    NotWholeBlocks { tensor: String, ty: GgmlType, ne0: u64 },
    #[error("tensor {tensor:?} data offset {offset} is not a multiple of the alignment {alignment}")]
    Misaligned { tensor: String, offset: u64, alignment: u64 },
    #[error("tensor {tensor:?} ends at byte {end}, past the end of the {file_len}-byte file")]
    TensorOutOfBounds { tensor: String, end: u64, file_len: u64 },
    #[error("tensor {0:?} appears twice")]
    DuplicateTensor(String),
    #[error("tensors {first:?} and {second:?} overlap in the file")]
    TensorOverlap { first: String, second: String },
}

/// One tensor's description, with its absolute position in the file.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the row length (contiguous), `dims[1]` the number of rows, ...
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Absolute byte offset of the first byte in the file.
    pub offset: u64,
    pub size: u64,
}

impl TensorInfo {
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }
    pub fn row_len(&self) -> u64 {
        self.dims[0]
    }
    pub fn rows(&self) -> u64 {
        self.elements() / self.dims[0]
    }
    pub fn end(&self) -> u64 {
        self.offset + self.size
    }
}

/// The parsed header of a GGUF file: everything but the tensor data.
#[derive(Clone, Debug)]
pub struct GgufFile {
    pub version: u32,
    /// Metadata in file order.
    pub metadata: Vec<(String, Value)>,
    /// Tensor infos in file order.
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Where tensor data begins (absolute).
    pub data_offset: u64,
    pub file_len: u64,
    key_index: HashMap<String, usize>,
    tensor_index: HashMap<String, usize>,
}

#[derive(Debug)]
pub enum Parsed {
    Complete(Box<GgufFile>),
    /// The prefix ends inside the header; a prefix of at least `needed` bytes gets further.
    NeedMore { needed: u64 },
}

impl GgufFile {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.key_index.get(key).map(|&i| &self.metadata[i].1)
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    pub fn get_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        self.typed(key, "a string", Value::as_str)
    }

    pub fn get_int(&self, key: &str) -> Result<Option<i128>, GgufError> {
        self.typed(key, "an integer", Value::as_int)
    }

    pub fn get_f64(&self, key: &str) -> Result<Option<f64>, GgufError> {
        self.typed(key, "a number", Value::as_f64)
    }

    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        self.typed(key, "a boolean", Value::as_bool)
    }

    pub fn get_array(&self, key: &str) -> Result<Option<&Array>, GgufError> {
        self.typed(key, "an array", Value::as_array)
    }

    fn typed<'a, T>(
        &'a self,
        key: &str,
        expected: &'static str,
        f: impl Fn(&'a Value) -> Option<T>,
    ) -> Result<Option<T>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => f(v).map(Some).ok_or(GgufError::WrongType { key: key.into(), expected }),
        }
    }

    /// Total bytes of tensor data.
    pub fn tensor_bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.size).sum()
    }
}

/// Parse the header of a GGUF file of `file_len` bytes from its first `prefix.len()` bytes.
pub fn parse(prefix: &[u8], file_len: u64) -> Result<Parsed, GgufError> {
    let mut r = Reader { buf: prefix, pos: 0, file_len };
    match parse_inner(&mut r) {
        Ok(file) => Ok(Parsed::Complete(Box::new(file))),
        Err(Stop::NeedMore(needed)) => Ok(Parsed::NeedMore { needed }),
        Err(Stop::Error(e)) => Err(e),
    }
}

/// Parse a whole file held in memory.
pub fn parse_complete(bytes: &[u8]) -> Result<GgufFile, GgufError> {
    match parse(bytes, bytes.len() as u64)? {
        Parsed::Complete(f) => Ok(*f),
        // With the whole file in hand, every read past the prefix is past the file.
        Parsed::NeedMore { .. } => unreachable!("a complete file never needs more"),
    }
}

enum Stop {
    NeedMore(u64),
    Error(GgufError),
}

impl From<GgufError> for Stop {
    fn from(e: GgufError) -> Self {
        Stop::Error(e)
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: u64,
    file_len: u64,
}

impl<'a> Reader<'a> {
    /// Make sure `len` more bytes are available; `what` names them in errors.
    fn want(&self, len: u64, what: &dyn Fn() -> String) -> Result<(), Stop> {
        let end = self.pos.checked_add(len).ok_or_else(|| GgufError::Overflow { what: what() })?;
        if end > self.file_len {
            return Err(GgufError::Truncated { what: what(), needed: end, file_len: self.file_len }.into());
        }
        if end > MAX_HEADER_BYTES {
            return Err(GgufError::HeaderTooLarge { what: what() }.into());
        }
        if end > self.buf.len() as u64 {
            return Err(Stop::NeedMore(end));
        }
        Ok(())
    }

    fn bytes(&mut self, len: u64, what: &dyn Fn() -> String) -> Result<&'a [u8], Stop> {
        self.want(len, what)?;
        let start = self.pos as usize;
        self.pos += len;
        Ok(&self.buf[start..self.pos as usize])
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N], Stop> {
        let b = self.bytes(N as u64, what)?;
        Ok(b.try_into().expect("length checked"))
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, Stop> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, Stop> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String, Stop> {
        let len = self.u64(what)?;
        let bytes = self.bytes(len, what)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(GgufError::NonUtf8 { what: what() }.into()),
        }
    }

    /// Check that `count` elements of at least `min_size` bytes each fit in the file, the header
    /// limit and the buffer, and return `count` as a capacity that is then safe to reserve: it is
    /// at most the buffer's length, whatever the file claims.
    fn count_fits(&self, count: u64, min_size: u64, what: &dyn Fn() -> String) -> Result<usize, Stop> {
        debug_assert!(min_size > 0);
        let total = count.checked_mul(min_size).ok_or_else(|| GgufError::Overflow { what: what() })?;
        self.want(total, what)?;
        Ok(count as usize)
    }
}

fn parse_inner(r: &mut Reader) -> Result<GgufFile, Stop> {
    let magic: [u8; 4] = match r.array(&|| "magic".into()) {
        Ok(m) => m,
        // A file shorter than 4 bytes cannot be GGUF: say so, with its bytes, rather than
        // "truncated". Ask for all of them first, so that a prefix answers as the whole file does.
        Err(Stop::Error(GgufError::Truncated { .. })) => {
            let file_len = r.file_len as usize;
            if r.buf.len() < file_len {
                return Err(Stop::NeedMore(r.file_len));
            }
            return Err(GgufError::BadMagic { found: r.buf[..file_len].to_vec() }.into());
        }
        Err(e) => return Err(e),
    };
    if magic != MAGIC {
        return Err(GgufError::BadMagic { found: magic.to_vec() }.into());
    }
    let version = r.u32(&|| "version".into())?;
    if version != 2 && version != 3 {
        return Err(GgufError::UnsupportedVersion(version).into());
    }
    let tensor_count = r.u64(&|| "tensor count".into())?;
    let kv_count = r.u64(&|| "metadata count".into())?;

    // Each key/value takes at least 8 (key length) + 4 (type) + 1 bytes.
    let cap = r.count_fits(kv_count, 13, &|| format!("{kv_count} metadata entries"))?;
    let mut metadata = Vec::with_capacity(cap);
    let mut key_index = HashMap::with_capacity(cap);
    for i in 0..kv_count {
        let key = r.string(&|| format!("metadata key #{i}"))?;
        let ty = r.u32(&|| format!("type of metadata key {key:?}"))?;
        let value = read_value(r, ty, &key, 0)?;
        if key_index.insert(key.clone(), metadata.len()).is_some() {
            return Err(GgufError::DuplicateKey(key).into());
        }
        metadata.push((key, value));
    }

    let alignment = match key_index.get("general.alignment").map(|&i| &metadata[i].1) {
        None => DEFAULT_ALIGNMENT,
        Some(v) => match v.as_int() {
            Some(a) if a > 0 && a % 8 == 0 && a <= u32::MAX as i128 => a as u64,
            Some(a) => return Err(GgufError::BadAlignment(a).into()),
            None => {
                return Err(GgufError::WrongType { key: "general.alignment".into(), expected: "an integer" }.into())
            }
        },
    };

    // Each tensor info takes at least 8 (name length) + 4 (n_dims) + 8 (one dim) + 4 + 8 bytes.
    let cap = r.count_fits(tensor_count, 32, &|| format!("{tensor_count} tensor infos"))?;
    let mut raw = Vec::with_capacity(cap);
    let mut names = HashSet::with_capacity(cap);
    for i in 0..tensor_count {
        let name = r.string(&|| format!("name of tensor #{i}"))?;
        let n_dims = r.u32(&|| format!("dimension count of tensor {name:?}"))?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(GgufError::BadDimCount { tensor: name, n_dims }.into());
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(r.u64(&|| format!("dimensions of tensor {name:?}"))?);
        }
        let ty = GgmlType(r.u32(&|| format!("type of tensor {name:?}"))?);
        let offset = r.u64(&|| format!("offset of tensor {name:?}"))?;
        if !names.insert(name.clone()) {
            return Err(GgufError::DuplicateTensor(name).into());
        }
        raw.push((name, dims, ty, offset));
    }

    let data_offset = align_up(r.pos, alignment).ok_or_else(|| GgufError::Overflow { what: "data offset".into() })?;
    let mut tensors = Vec::with_capacity(raw.len());
    let mut tensor_index = HashMap::with_capacity(raw.len());
    for (name, dims, ty, rel) in raw {
        let info = check_tensor(name, dims, ty, rel, data_offset, alignment, r.file_len)?;
        tensor_index.insert(info.name.clone(), tensors.len());
        tensors.push(info);
    }
    check_no_overlap(&tensors)?;
    Ok(GgufFile {
        version,
        metadata,
        tensors,
        alignment,
        data_offset,
        file_len: r.file_len,
        key_index,
        tensor_index,
    })
}

fn check_tensor(
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    rel: u64,
    data_offset: u64,
    alignment: u64,
    file_len: u64,
) -> Result<TensorInfo, GgufError> {
    if ty.name().is_none() {
        return Err(GgufError::UnknownTensorType { tensor: name, type_id: ty.0 });
    }
    if !ty.is_supported() {
        return Err(GgufError::UnsupportedTensorType { tensor: name, ty });
    }
    if dims.contains(&0) {
        return Err(GgufError::ZeroDim { tensor: name, dims });
    }
    let overflow = |name: &str| GgufError::Overflow { what: format!("size of tensor {name:?}") };
    let elements = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d)).ok_or_else(|| overflow(&name))?;
    let (block, _) = ty.block_layout().expect("supported");
    if dims[0] % block != 0 {
        return Err(GgufError::NotWholeBlocks { tensor: name, ty, ne0: dims[0] });
    }
    let size = ty.bytes_for(elements).ok_or_else(|| overflow(&name))?;
    if rel % alignment != 0 {
        return Err(GgufError::Misaligned { tensor: name, offset: rel, alignment });
    }
    let offset = data_offset.checked_add(rel).ok_or_else(|| overflow(&name))?;
    let end = offset.checked_add(size).ok_or_else(|| overflow(&name))?;
    if end > file_len {
        return Err(GgufError::TensorOutOfBounds { tensor: name, end, file_len });
    }
    Ok(TensorInfo { name, dims, ty, offset, size })
}

/// Tensors sharing bytes would let a header describe far more data than the file holds (the
/// loaders size buffers by `size`, and `tensor_bytes` could overflow); llama.cpp never writes them.
fn check_no_overlap(tensors: &[TensorInfo]) -> Result<(), GgufError> {
    let mut by_offset: Vec<&TensorInfo> = tensors.iter().collect();
    by_offset.sort_unstable_by_key(|t| t.offset);
    match by_offset.windows(2).find(|w| w[0].end() > w[1].offset) {
        Some(w) => Err(GgufError::TensorOverlap { first: w[0].name.clone(), second: w[1].name.clone() }),
        None => Ok(()),
    }
}

pub(crate) fn align_up(x: u64, alignment: u64) -> Option<u64> {
    Some(x.checked_add(alignment - 1)? / alignment * alignment)
}

fn read_value(r: &mut Reader, ty: u32, key: &str, depth: u32) -> Result<Value, Stop> {
    let what = || format!("value of metadata key {key:?}");
    Ok(match ty {
        type_id::U8 => Value::U8(r.array::<1>(&what)?[0]),
        type_id::I8 => Value::I8(r.array::<1>(&what)?[0] as i8),
        type_id::U16 => Value::U16(u16::from_le_bytes(r.array(&what)?)),
        type_id::I16 => Value::I16(i16::from_le_bytes(r.array(&what)?)),
        type_id::U32 => Value::U32(r.u32(&what)?),
        type_id::I32 => Value::I32(i32::from_le_bytes(r.array(&what)?)),
        type_id::F32 => Value::F32(f32::from_le_bytes(r.array(&what)?)),
        type_id::BOOL => Value::Bool(r.array::<1>(&what)?[0] != 0),
        type_id::STRING => Value::String(r.string(&what)?),
        type_id::U64 => Value::U64(r.u64(&what)?),
        type_id::I64 => Value::I64(i64::from_le_bytes(r.array(&what)?)),
        type_id::F64 => Value::F64(f64::from_le_bytes(r.array(&what)?)),
        type_id::ARRAY => Value::Array(read_array(r, key, depth)?),
        other => return Err(GgufError::UnknownValueType { key: key.into(), type_id: other }.into()),
    })
}

fn read_array(r: &mut Reader, key: &str, depth: u32) -> Result<Array, Stop> {
    if depth >= MAX_ARRAY_DEPTH {
        return Err(GgufError::NestingTooDeep { key: key.into() }.into());
    }
    let what = || format!("array of metadata key {key:?}");
    let elem_ty = r.u32(&what)?;
    let count = r.u64(&what)?;
    // Smallest encoding of one element: strings and arrays carry an 8-byte length, arrays a
    // 4-byte type too.
    let min_size = match elem_ty {
        type_id::U8 | type_id::I8 | type_id::BOOL => 1,
        type_id::U16 | type_id::I16 => 2,
        type_id::U32 | type_id::I32 | type_id::F32 => 4,
        type_id::U64 | type_id::I64 | type_id::F64 | type_id::STRING => 8,
        type_id::ARRAY => 12,
        other => return Err(GgufError::UnknownValueType { key: key.into(), type_id: other }.into()),
    };
    let cap = r.count_fits(count, min_size, &|| format!("{count}-element array of metadata key {key:?}"))?;
    macro_rules! fixed {
        ($variant:ident, $t:ty) => {{
            let n = std::mem::size_of::<$t>();
            let bytes = r.bytes(count * n as u64, &what)?;
            Array::$variant(bytes.chunks_exact(n).map(|c| <$t>::from_le_bytes(c.try_into().expect("chunk"))).collect())
        }};
    }
    Ok(match elem_ty {
        type_id::U8 => Array::U8(r.bytes(count, &what)?.to_vec()),
        type_id::I8 => Array::I8(r.bytes(count, &what)?.iter().map(|&b| b as i8).collect()),
        type_id::BOOL => Array::Bool(r.bytes(count, &what)?.iter().map(|&b| b != 0).collect()),
        type_id::U16 => fixed!(U16, u16),
        type_id::I16 => fixed!(I16, i16),
        type_id::U32 => fixed!(U32, u32),
        type_id::I32 => fixed!(I32, i32),
        type_id::F32 => fixed!(F32, f32),
        type_id::U64 => fixed!(U64, u64),
        type_id::I64 => fixed!(I64, i64),
        type_id::F64 => fixed!(F64, f64),
        type_id::STRING => {
            let mut v = Vec::with_capacity(cap);
            for i in 0..count {
                v.push(r.string(&|| format!("element {i} of metadata key {key:?}"))?);
            }
            Array::String(v)
        }
        _ => {
            // Each element is itself an array: element type, count, elements.
            let mut v = Vec::with_capacity(cap);
            for _ in 0..count {
                v.push(read_array(r, key, depth + 1)?);
            }
            Array::Array(v)
        }
    })
}
