//! The streaming loader: a GGUF file's bytes arrive in chunks, in file order, and each tensor's
//! byte range goes to a [`TensorSink`] (GPU buffers, or memory for the CPU reference). Native
//! code feeds it from a file read in chunks, the browser from IndexedDB shards; no caller ever
//! holds the whole model in memory. A tensor may straddle any number of chunks.

use crate::gguf::{self, GgufError, GgufFile, Parsed};
use std::io::Read;

/// Receives each tensor's bytes. For one tensor, calls come in increasing `offset` order and
/// cover `0..size` exactly once; `tensor` indexes `GgufFile::tensors`.
pub trait TensorSink {
    type Error: From<LoadError>;
    fn write(&mut self, tensor: usize, offset: u64, bytes: &[u8]) -> Result<(), Self::Error>;
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("reading the model file failed: {0}")]
    Io(String),
    #[error("the model data ended at byte {at} but the file is {file_len} bytes long")]
    ShortRead { at: u64, file_len: u64 },
    #[error("tensor {name:?} received {got} of its {size} bytes")]
    Incomplete { name: String, got: u64, size: u64 },
}

/// Routes chunks of the file to the tensors they overlap.
pub struct StreamRouter {
    /// (start, end, tensor index) sorted by start.
    ranges: Vec<(u64, u64, usize)>,
    received: Vec<u64>,
    names: Vec<String>,
    /// First range that may still need bytes.
    cursor: usize,
    /// File offset of the next chunk.
    pos: u64,
}

impl StreamRouter {
    pub fn new(file: &GgufFile) -> Self {
        let mut ranges: Vec<_> = file.tensors.iter().enumerate().map(|(i, t)| (t.offset, t.end(), i)).collect();
        ranges.sort_unstable();
        Self {
            ranges,
            received: vec![0; file.tensors.len()],
            names: file.tensors.iter().map(|t| t.name.clone()).collect(),
            cursor: 0,
            pos: 0,
        }
    }

    /// Bytes of the file routed so far (the offset the next chunk must start at).
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Feed the next chunk of the file (it starts at [`Self::position`]).
    pub fn push<S: TensorSink>(&mut self, chunk: &[u8], sink: &mut S) -> Result<(), S::Error> {
        let (start, end) = (self.pos, self.pos + chunk.len() as u64);
        let mut i = self.cursor;
        while i < self.ranges.len() && self.ranges[i].0 < end {
            let (t_start, t_end, idx) = self.ranges[i];
            let (lo, hi) = (t_start.max(start), t_end.min(end));
            if lo < hi {
                let piece = &chunk[(lo - start) as usize..(hi - start) as usize];
                sink.write(idx, lo - t_start, piece)?;
                self.received[idx] += hi - lo;
            }
            i += 1;
        }
        while self.cursor < self.ranges.len() && self.ranges[self.cursor].1 <= end {
            self.cursor += 1;
        }
        self.pos = end;
        Ok(())
    }

    /// Check that every tensor got all its bytes.
    pub fn finish(&self) -> Result<(), LoadError> {
        for &(start, end, idx) in &self.ranges {
            if self.received[idx] != end - start {
                return Err(LoadError::Incomplete { name: self.names[idx].clone(), got: self.received[idx], size: end - start });
            }
        }
        Ok(())
    }
}

/// Default chunk size for native reads: the size of one browser shard, so both paths behave alike.
pub const CHUNK_BYTES: usize = 32 << 20;

/// Parse the header from the front of `reader`, reading more until it is complete. Returns the
/// header and the bytes read so far (which the caller routes before reading on).
pub fn read_header(reader: &mut impl Read, file_len: u64) -> Result<(GgufFile, Vec<u8>), LoadError> {
    let mut buf = Vec::new();
    let mut want = (1u64 << 20).min(file_len);
    loop {
        fill_to(reader, &mut buf, want, file_len)?;
        match gguf::parse(&buf, file_len)? {
            Parsed::Complete(file) => return Ok((*file, buf)),
            // Grow geometrically so a 10 MB tokenizer header takes a handful of parses.
            Parsed::NeedMore { needed } => want = needed.max(want * 2).min(file_len),
        }
    }
}

fn fill_to(reader: &mut impl Read, buf: &mut Vec<u8>, want: u64, file_len: u64) -> Result<(), LoadError> {
    let have = buf.len();
    if want as usize <= have {
        return Ok(());
    }
    buf.resize(want as usize, 0);
    let mut at = have;
    while at < buf.len() {
        match reader.read(&mut buf[at..]) {
            Ok(0) => return Err(LoadError::ShortRead { at: at as u64, file_len }),
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(LoadError::Io(e.to_string())),
        }
    }
    Ok(())
}

/// Stream a whole file from `reader` (header first) into `sink`, `chunk` bytes at a time, with
/// never more than one chunk (plus the header) in memory.
pub fn stream_file<S: TensorSink>(
    reader: &mut impl Read,
    file_len: u64,
    chunk: usize,
    sink: &mut S,
    on_progress: impl FnMut(u64, u64),
) -> Result<GgufFile, S::Error> {
    let (file, head) = read_header(reader, file_len)?;
    stream_after_header(reader, file, head, chunk, sink, on_progress)
}

/// Continue [`read_header`]: route the header's bytes, then the rest of the file, into `sink`.
/// Callers that check the header first (is this a model we can run?) read it only once.
pub fn stream_after_header<S: TensorSink>(
    reader: &mut impl Read,
    file: GgufFile,
    head: Vec<u8>,
    chunk: usize,
    sink: &mut S,
    mut on_progress: impl FnMut(u64, u64),
) -> Result<GgufFile, S::Error> {
    let file_len = file.file_len;
    let mut router = StreamRouter::new(&file);
    router.push(&head, sink)?;
    let start = head.len() as u64;
    drop(head);
    for_each_chunk(reader, start, file_len, chunk, |bytes| -> Result<(), S::Error> {
        router.push(bytes, sink)?;
        on_progress(router.position(), file_len);
        Ok(())
    })?;
    router.finish()?;
    Ok(file)
}

/// Read `reader` from file offset `from` to `file_len` in chunks of at most `chunk` bytes,
/// reusing one buffer, and hand each chunk to `each` in order.
pub fn for_each_chunk<E: From<LoadError>>(
    reader: &mut impl Read,
    from: u64,
    file_len: u64,
    chunk: usize,
    mut each: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let mut buf = Vec::with_capacity(chunk);
    let mut pos = from;
    while pos < file_len {
        let want = (file_len - pos).min(chunk as u64);
        buf.clear();
        fill_to(reader, &mut buf, want, file_len)?;
        each(&buf)?;
        pos += want;
    }
    Ok(())
}

/// The process's peak resident memory (`VmHWM` in /proc/self/status), where the OS reports it
/// (Linux). Loading should peak near the model's size, whatever the file size: this checks it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A sink that keeps every tensor in memory (the CPU reference's weights).
pub struct MemorySink {
    pub tensors: Vec<Vec<u8>>,
}

impl MemorySink {
    pub fn new(file: &GgufFile) -> Self {
        // Sizes were checked against the file length by the GGUF reader.
        Self { tensors: file.tensors.iter().map(|t| Vec::with_capacity(t.size as usize)).collect() }
    }
}

impl TensorSink for MemorySink {
    type Error = LoadError;
    fn write(&mut self, tensor: usize, _offset: u64, bytes: &[u8]) -> Result<(), LoadError> {
        self.tensors[tensor].extend_from_slice(bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::{GgufWriter, Value};
    use crate::quant::GgmlType;

    #[test]
    fn tensors_straddling_chunks_arrive_whole() {
        let mut w = GgufWriter::new();
        w.meta("general.architecture", Value::String("test".into()));
        let a: Vec<u8> = (0..400u32).map(|i| i as u8).collect();
        let b: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        w.tensor("a", &[100], GgmlType::F32, a.clone());
        w.tensor("b", &[500], GgmlType::F16, b.clone());
        let bytes = w.to_bytes();
        for chunk in [1usize, 3, 7, 64, 1 << 20] {
            let mut sink = MemorySink { tensors: vec![Vec::new(), Vec::new()] };
            let file = stream_file(&mut &bytes[..], bytes.len() as u64, chunk, &mut sink, |_, _| {}).unwrap();
            assert_eq!(file.tensors.len(), 2);
            assert_eq!(sink.tensors[0], a, "chunk {chunk}");
            assert_eq!(sink.tensors[1], b, "chunk {chunk}");
        }
    }

    #[test]
    fn short_file_is_an_error() {
        let mut w = GgufWriter::new();
        w.tensor("a", &[100], GgmlType::F32, vec![0; 400]);
        let bytes = w.to_bytes();
        let claimed = bytes.len() as u64;
        let cut = &bytes[..bytes.len() - 10];
        let mut sink = MemorySink { tensors: vec![Vec::new()] };
        let err = stream_file(&mut &cut[..], claimed, 64, &mut sink, |_, _| {}).unwrap_err();
        assert!(matches!(err, LoadError::ShortRead { .. }), "{err}");
    }
}
