//! Weights on the GPU, exactly as quantized in the file: a [`TensorSink`] that streams each
//! tensor's bytes into storage buffers with `queue.write_buffer`, so the native loader and the
//! browser's shard reader share one path and GPU memory stays the size of the file's tensors.
//!
//! A tensor larger than the binding limit is split by rows: part `p` holds whole rows
//! `first_row .. first_row + rows`, and kernels get the part's first row so they index rows
//! within the part (Llama 3 8B: token_embd 296 MB Q4_K and output 431 MB Q6_K exceed 128 MiB).
//!
//! `write_buffer` wants 4-byte multiples at 4-byte offsets, but tensor pieces arrive at any
//! length (a tensor may straddle shards) and rows need not be word multiples (Q8_0 rows of one
//! block are 34 bytes). Bytes are staged per part from a word-aligned start: large pieces go
//! out directly except for a tail of at most 3 bytes carried into the next piece, small pieces
//! accumulate until [`STAGE_BYTES`], and a part's last word is zero-padded.

use super::device::ErrorScope;
use super::{Gpu, GpuError};
use crate::gguf::{GgufFile, TensorInfo};
use crate::model::loader::{LoadError, TensorSink};
use crate::quant::GgmlType;
use std::collections::HashMap;

/// Pieces smaller than this are gathered before one `write_buffer`.
pub const STAGE_BYTES: usize = 1 << 20;
/// Submit the queued writes every this many bytes so wgpu can recycle its staging memory
/// instead of holding a copy of the whole model until the first submit.
const SUBMIT_BYTES: u64 = 256 << 20;

/// One buffer of a tensor: rows `first_row .. first_row + rows`.
pub struct WeightPart {
    /// `[rows][row_bytes]` quantized bytes, size padded up to a multiple of 4.
    pub buffer: wgpu::Buffer,
    pub first_row: u64,
    pub rows: u64,
}

/// A tensor on the GPU. Rows are `dims[0]` elements (ggml order); 1-D tensors are one row.
pub struct GpuTensor {
    pub name: String,
    pub ty: GgmlType,
    pub dims: Vec<u64>,
    pub row_len: u64,
    pub rows: u64,
    pub row_bytes: u64,
    /// Rows per part (every part but the last holds exactly this many).
    pub rows_per_part: u64,
    pub parts: Vec<WeightPart>,
}

impl GpuTensor {
    pub fn elements(&self) -> u64 {
        self.row_len * self.rows
    }
    fn part_bytes(&self, p: usize) -> u64 {
        self.parts[p].rows * self.row_bytes
    }
}

struct Pending {
    tensor: usize,
    part: usize,
    /// Offset in the part buffer of `buf[0]`; always a multiple of 4.
    start: u64,
    buf: Vec<u8>,
}

pub struct GpuWeights {
    gpu: Gpu,
    tensors: Vec<GpuTensor>,
    by_name: HashMap<String, usize>,
    /// Bytes received per tensor, to insist on in-order delivery.
    received: Vec<u64>,
    sizes: Vec<u64>,
    pending: Option<Pending>,
    since_submit: u64,
    /// Captures errors from the writes until [`GpuWeights::finish`].
    scope: Option<ErrorScope>,
}

impl GpuWeights {
    /// Allocate a buffer (or several) for every tensor of `file`; bytes come through the
    /// [`TensorSink`] impl, then [`GpuWeights::finish`].
    pub async fn new(gpu: &Gpu, file: &GgufFile) -> Result<Self, GpuError> {
        Self::for_tensors(gpu, &file.tensors).await
    }

    /// As [`GpuWeights::new`] for any list of tensor infos (`offset` is ignored; sink indices
    /// index this list). Tests build synthetic tensors this way.
    pub async fn for_tensors(gpu: &Gpu, infos: &[TensorInfo]) -> Result<Self, GpuError> {
        let scope = gpu.scope();
        let mut tensors = Vec::with_capacity(infos.len());
        for info in infos {
            tensors.push(allocate(gpu, info)?);
        }
        scope.check("allocating weight buffers").await?;
        Ok(Self {
            gpu: gpu.clone(),
            by_name: infos.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect(),
            received: vec![0; infos.len()],
            sizes: infos.iter().map(|t| t.size).collect(),
            tensors,
            pending: None,
            since_submit: 0,
            scope: Some(gpu.scope()),
        })
    }

    pub fn get(&self, name: &str) -> Result<&GpuTensor, GpuError> {
        self.by_name.get(name).map(|&i| &self.tensors[i]).ok_or_else(|| GpuError::MissingTensor(name.into()))
    }

    pub fn tensors(&self) -> &[GpuTensor] {
        &self.tensors
    }

    /// GPU memory taken by weight buffers (file bytes plus at most 3 bytes of padding per part).
    pub fn gpu_bytes(&self) -> u64 {
        self.tensors.iter().flat_map(|t| &t.parts).map(|p| p.buffer.size()).sum()
    }

    /// Flush the last staged bytes, wait for the uploads, and report any error they raised.
    pub async fn finish(&mut self) -> Result<(), GpuError> {
        self.flush_pending();
        for (i, t) in self.tensors.iter().enumerate() {
            if self.received[i] != self.sizes[i] {
                return Err(LoadError::Incomplete { name: t.name.clone(), got: self.received[i], size: self.sizes[i] }.into());
            }
        }
        self.gpu.queue.submit(std::iter::empty());
        self.gpu.wait_idle()?;
        if let Some(scope) = self.scope.take() {
            scope.check("uploading weights").await?;
        }
        self.gpu.take_uncaptured()
    }

    /// Stage `data`, which belongs at byte `at` of part `part` of `tensor`.
    fn stage(&mut self, tensor: usize, part: usize, at: u64, mut data: &[u8]) {
        if self.pending.as_ref().is_some_and(|p| (p.tensor, p.part) != (tensor, part)) {
            self.flush_pending();
        }
        // Sequential delivery means a new part always starts at its byte 0.
        let p = self.pending.get_or_insert(Pending { tensor, part, start: at, buf: Vec::new() });
        debug_assert_eq!(p.start + p.buf.len() as u64, at);
        let buffer = &self.tensors[tensor].parts[part].buffer;
        if data.len() >= STAGE_BYTES {
            // Complete the carried word (if any) from the front of data, then send the
            // word-aligned bulk straight from the caller's slice.
            if !p.buf.is_empty() {
                let fill = (4 - p.buf.len() % 4) % 4;
                p.buf.extend_from_slice(&data[..fill]);
                data = &data[fill..];
                self.gpu.queue.write_buffer(buffer, p.start, &p.buf);
                p.start += p.buf.len() as u64;
                self.since_submit += p.buf.len() as u64;
                p.buf.clear();
            }
            let direct = data.len() & !3;
            self.gpu.queue.write_buffer(buffer, p.start, &data[..direct]);
            p.start += direct as u64;
            self.since_submit += direct as u64;
            p.buf.extend_from_slice(&data[direct..]);
        } else {
            p.buf.extend_from_slice(data);
            if p.buf.len() >= STAGE_BYTES {
                let n = p.buf.len() & !3;
                self.gpu.queue.write_buffer(buffer, p.start, &p.buf[..n]);
                p.start += n as u64;
                self.since_submit += n as u64;
                p.buf.drain(..n);
            }
        }
        if self.since_submit >= SUBMIT_BYTES {
            self.gpu.queue.submit(std::iter::empty());
            // Native: let wgpu free the staging memory before more arrives. (A failed wait
            // surfaces again at finish.)
            let _ = self.gpu.wait_idle();
            self.since_submit = 0;
        }
    }

    /// Write the staged bytes, zero-padded to a whole word (only ever at a part's end).
    fn flush_pending(&mut self) {
        if let Some(mut p) = self.pending.take() {
            if !p.buf.is_empty() {
                p.buf.resize(p.buf.len().next_multiple_of(4), 0);
                let buffer = &self.tensors[p.tensor].parts[p.part].buffer;
                self.gpu.queue.write_buffer(buffer, p.start, &p.buf);
                self.since_submit += p.buf.len() as u64;
            }
        }
    }
}

/// Lay a tensor out in parts of whole rows that each fit one binding, and create the buffers.
fn allocate(gpu: &Gpu, info: &TensorInfo) -> Result<GpuTensor, GpuError> {
    let unsupported = || GpuError::UnsupportedType { op: "upload", tensor: info.name.clone(), ty: info.ty };
    let row_len = *info.dims.first().ok_or_else(unsupported)?;
    let row_bytes = info.ty.bytes_for(row_len).ok_or_else(unsupported)?;
    let rows = info.dims.iter().skip(1).product::<u64>();
    if rows.checked_mul(row_bytes) != Some(info.size) {
        return Err(GpuError::Shape {
            op: "upload",
            message: format!("tensor {:?}: {} bytes for dims {:?} of {}", info.name, info.size, info.dims, info.ty),
        });
    }
    let limit = gpu.binding_limit();
    let rows_per_part = (limit / row_bytes.max(1)).min(rows.max(1));
    if rows_per_part == 0 {
        return Err(GpuError::TooLarge { what: format!("one row of tensor {:?}", info.name), bytes: row_bytes, limit });
    }
    let n_parts = rows.div_ceil(rows_per_part).max(1);
    let mut parts = Vec::with_capacity(n_parts as usize);
    for p in 0..n_parts {
        let first_row = p * rows_per_part;
        let part_rows = rows_per_part.min(rows - first_row);
        let label = if n_parts == 1 { info.name.clone() } else { format!("{} part {p}", info.name) };
        let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(&label),
            size: (part_rows * row_bytes).next_multiple_of(4).max(4),
            // COPY_SRC lets tests and debugging tools read uploads back; it costs nothing.
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        parts.push(WeightPart { buffer, first_row, rows: part_rows });
    }
    Ok(GpuTensor { name: info.name.clone(), ty: info.ty, dims: info.dims.clone(), row_len, rows, row_bytes, rows_per_part, parts })
}

impl TensorSink for GpuWeights {
    type Error = GpuError;

    fn write(&mut self, tensor: usize, offset: u64, mut bytes: &[u8]) -> Result<(), GpuError> {
        let t = self.tensors.get(tensor).ok_or_else(|| GpuError::MissingTensor(format!("tensor index {tensor}")))?;
        let expected = self.received[tensor];
        if offset != expected || offset + bytes.len() as u64 > self.sizes[tensor] {
            return Err(GpuError::OutOfOrder { tensor: t.name.clone(), offset, expected });
        }
        self.received[tensor] += bytes.len() as u64;
        let part_span = t.rows_per_part * t.row_bytes;
        let mut offset = offset;
        while !bytes.is_empty() {
            let t = &self.tensors[tensor];
            let part = ((offset / part_span) as usize).min(t.parts.len() - 1);
            let at = offset - part as u64 * part_span;
            let take = ((t.part_bytes(part) - at) as usize).min(bytes.len());
            self.stage(tensor, part, at, &bytes[..take]);
            bytes = &bytes[take..];
            offset += take as u64;
        }
        Ok(())
    }
}
