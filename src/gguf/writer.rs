//! GGUF v3 writer: builds synthetic models for tests and benchmarks.

use super::value::{Array, Value};
use super::{align_up, DEFAULT_ALIGNMENT};
use crate::quant::GgmlType;
use std::io::{self, Write};

/// Collects metadata and tensors, then writes a GGUF v3 file.
///
/// Tensor data may be given as bytes ([`GgufWriter::tensor`]) or produced while writing
/// ([`GgufWriter::tensor_with`]) so that multi-gigabyte synthetic models never sit in memory.
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    tensors: Vec<PendingTensor>,
    alignment: u64,
}

type Fill = Box<dyn FnMut(&mut dyn Write) -> io::Result<()>>;

struct PendingTensor {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    size: u64,
    fill: Fill,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    pub fn new() -> Self {
        Self { metadata: Vec::new(), tensors: Vec::new(), alignment: DEFAULT_ALIGNMENT }
    }

    pub fn meta(&mut self, key: &str, value: Value) -> &mut Self {
        if key == "general.alignment" {
            if let Some(a) = value.as_int() {
                self.alignment = a.max(1) as u64;
            }
        }
        self.metadata.push((key.to_owned(), value));
        self
    }

    /// Add a tensor whose bytes are already in memory. `dims` in ggml order (row length first).
    pub fn tensor(&mut self, name: &str, dims: &[u64], ty: GgmlType, data: Vec<u8>) -> &mut Self {
        let size = data.len() as u64;
        let mut data = Some(data);
        self.tensor_with(name, dims, ty, size, move |w| w.write_all(&data.take().unwrap_or_default()))
    }

    /// Add a tensor of `size` bytes whose data `fill` writes when the file is written.
    pub fn tensor_with(
        &mut self,
        name: &str,
        dims: &[u64],
        ty: GgmlType,
        size: u64,
        fill: impl FnMut(&mut dyn Write) -> io::Result<()> + 'static,
    ) -> &mut Self {
        self.tensors.push(PendingTensor { name: name.to_owned(), dims: dims.to_vec(), ty, size, fill: Box::new(fill) });
        self
    }

    /// Write the whole file.
    pub fn write(mut self, out: &mut dyn Write) -> io::Result<()> {
        let mut header = Vec::new();
        header.extend_from_slice(&super::MAGIC);
        header.extend_from_slice(&3u32.to_le_bytes());
        header.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        header.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_str(&mut header, key);
            header.extend_from_slice(&value.type_id().to_le_bytes());
            put_value(&mut header, value);
        }
        let mut rel = 0u64;
        let mut offsets = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            put_str(&mut header, &t.name);
            header.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                header.extend_from_slice(&d.to_le_bytes());
            }
            header.extend_from_slice(&t.ty.0.to_le_bytes());
            header.extend_from_slice(&rel.to_le_bytes());
            offsets.push(rel);
            rel = align_up(rel + t.size, self.alignment).expect("synthetic sizes fit u64");
        }
        let data_start = align_up(header.len() as u64, self.alignment).expect("header fits");
        header.resize(data_start as usize, 0);
        out.write_all(&header)?;
        let mut written = 0u64;
        for (t, &off) in self.tensors.iter_mut().zip(&offsets) {
            out.write_all(&vec![0u8; (off - written) as usize])?;
            let mut counter = CountingWriter { inner: &mut *out, count: 0 };
            (t.fill)(&mut counter)?;
            if counter.count != t.size {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("tensor {} wrote {} bytes, declared {}", t.name, counter.count, t.size),
                ));
            }
            written = off + t.size;
        }
        Ok(())
    }

    /// Write the whole file into memory.
    pub fn to_bytes(self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write(&mut v).expect("writing to memory cannot fail");
        v
    }
}

struct CountingWriter<'a> {
    inner: &'a mut dyn Write,
    count: u64,
}

impl Write for CountingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::String(s) => put_str(out, s),
        Value::Array(a) => put_array(out, a),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}

fn put_array(out: &mut Vec<u8>, a: &Array) {
    out.extend_from_slice(&a.elem_type_id().to_le_bytes());
    out.extend_from_slice(&(a.len() as u64).to_le_bytes());
    macro_rules! each {
        ($v:expr) => {
            for x in $v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        };
    }
    match a {
        Array::U8(v) => out.extend_from_slice(v),
        Array::I8(v) => out.extend(v.iter().map(|&x| x as u8)),
        Array::Bool(v) => out.extend(v.iter().map(|&x| x as u8)),
        Array::U16(v) => each!(v),
        Array::I16(v) => each!(v),
        Array::U32(v) => each!(v),
        Array::I32(v) => each!(v),
        Array::F32(v) => each!(v),
        Array::U64(v) => each!(v),
        Array::I64(v) => each!(v),
        Array::F64(v) => each!(v),
        Array::String(v) => v.iter().for_each(|s| put_str(out, s)),
        Array::Array(v) => v.iter().for_each(|inner| put_array(out, inner)),
    }
}
