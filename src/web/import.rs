//! Importing a GGUF into the store, from a URL or a local file: shard by shard, resumable,
//! validated at the first shard that completes the header.
//!
//! Both entry points run the same [`Store::run_import`] over a [`source::Opener`]; only how bytes
//! are fetched differs. The flow:
//! 1. An existing complete record for the same source is returned as is; an incomplete one for
//!    the same source is resumed from its first missing shard; anything else under the id is
//!    replaced (a complete model from another source is refused instead, see [`StoreError::Exists`]).
//! 2. The source is opened at the resume offset. If it starts elsewhere (a server that ignored
//!    `Range`) or is not the same file (size or version stamp changed), the partial import is
//!    deleted and the import restarts from 0.
//! 3. Chunks are assembled into shards in JS memory. Before a shard is written, the header
//!    prefix is checked (GGUF parse, then the Llama config); a refusal deletes the partial import.
//! 4. Each shard is written together with the record's new progress, so that a reload knows
//!    where to resume; the last one also sets `complete`.

use super::error::StoreError;
use super::source::{BlobOpener, ByteSource, Opener, UrlOpener};
use super::store::{GgufSummary, ModelRecord, Store, MAX_SHARD_SIZE, MIN_SHARD_SIZE};
use crate::gguf::{self, GgufFile, Parsed};
use crate::model::config::LlamaConfig;
use js_sys::Uint8Array;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{AbortController, AbortSignal, Blob};

/// Reported after the import is opened and after every stored shard.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    pub id: String,
    pub stored_bytes: u64,
    pub total_bytes: u64,
    pub shards_stored: u32,
    pub shard_count: u32,
}

impl Progress {
    fn of(record: &ModelRecord) -> Self {
        Progress {
            id: record.id.clone(),
            stored_bytes: record.stored_bytes(),
            total_bytes: record.total_size,
            shards_stored: record.shards_stored,
            shard_count: record.shard_count(),
        }
    }
}

impl Store {
    /// Import (or resume importing) the GGUF at `url` as model `id`.
    ///
    /// `shard_size` applies to a new import; a resumed one keeps the size it started with.
    /// `abort` cancels it (as does [`Store::cancel_import`]); a cancelled import is resumable.
    pub async fn import_url(
        &self,
        url: &str,
        id: &str,
        shard_size: u32,
        on_progress: &mut dyn FnMut(&Progress),
        abort: Option<&AbortSignal>,
    ) -> Result<ModelRecord, StoreError> {
        let guard = ImportGuard::begin(self, id, abort)?;
        let name = url.rsplit('/').find(|s| !s.is_empty()).unwrap_or(url);
        let name = name.split(['?', '#']).next().unwrap_or(name).to_string();
        let opener = UrlOpener { url: url.to_string(), signal: guard.signal() };
        self.run_import(&opener, id, &name, shard_size, on_progress, &guard.signal()).await
    }

    /// Import (or resume importing) a local `Blob`/`File` as model `id`, read by `Blob.slice`
    /// one shard at a time. `name` identifies the file: choosing the same file again (same name,
    /// size and, for a `File`, lastModified) resumes.
    pub async fn import_blob(
        &self,
        blob: &Blob,
        id: &str,
        name: &str,
        shard_size: u32,
        on_progress: &mut dyn FnMut(&Progress),
        abort: Option<&AbortSignal>,
    ) -> Result<ModelRecord, StoreError> {
        let guard = ImportGuard::begin(self, id, abort)?;
        let opener = BlobOpener { blob: blob.clone(), name: name.to_string() };
        self.run_import(&opener, id, name, shard_size, on_progress, &guard.signal()).await
    }

    async fn run_import<O: Opener>(
        &self,
        opener: &O,
        id: &str,
        name: &str,
        shard_size: u32,
        on_progress: &mut dyn FnMut(&Progress),
        signal: &AbortSignal,
    ) -> Result<ModelRecord, StoreError> {
        if !(MIN_SHARD_SIZE..=MAX_SHARD_SIZE).contains(&shard_size) || !shard_size.is_multiple_of(4) {
            return Err(StoreError::InvalidArgument(format!(
                "shard size {shard_size} must be a multiple of 4 between {MIN_SHARD_SIZE} and {MAX_SHARD_SIZE} bytes"
            )));
        }
        if id.is_empty() {
            return Err(StoreError::InvalidArgument("a model id must not be empty".into()));
        }
        let source = opener.source();
        let mut previous = match self.model(id).await? {
            Some(r) if r.complete && r.source == source => return Ok(r),
            Some(r) if r.complete => return Err(StoreError::Exists(id.into())),
            Some(r) if r.source == source => Some(r),
            // An unfinished import of something else under this id: this one replaces it.
            Some(_) => {
                self.remove(id).await?;
                None
            }
            None => None,
        };
        let requested_shard_size = shard_size;
        let mut shard_size = previous.as_ref().map_or(shard_size, |r| r.shard_size);
        let resume_at = previous.as_ref().map_or(0, ModelRecord::stored_bytes);
        let aborted_at = |stored: u64, total: u64| StoreError::Aborted { id: id.into(), stored, total };
        let check = |e: StoreError, stored: u64, total: u64| if signal.aborted() { aborted_at(stored, total) } else { e };
        let prev_total = previous.as_ref().map_or(0, |r| r.total_size);

        let mut opened = opener.open(resume_at, shard_size).await.map_err(|e| check(e, resume_at, prev_total))?;
        if let Some(prev) = &previous {
            let tags_differ = matches!((&prev.version_tag, &opened.tag), (Some(a), Some(b)) if a != b);
            if opened.start != resume_at || opened.total != prev.total_size || tags_differ {
                // The server ignored Range (200, not 206), or the file is not the one we began
                // with: splicing would corrupt the model, so start over.
                self.remove(id).await?;
                previous = None;
                shard_size = requested_shard_size;
                if opened.start != 0 {
                    drop(opened);
                    opened = opener.open(0, shard_size).await.map_err(|e| check(e, 0, prev_total))?;
                }
            }
        }
        if opened.start != if previous.is_some() { resume_at } else { 0 } {
            return Err(StoreError::BadResponse(format!("bytes from offset {} when the start of the file was asked for", opened.start)));
        }
        let total = opened.total;
        if total == 0 {
            return Err(StoreError::Refused("the file is empty".into()));
        }
        if total.div_ceil(shard_size as u64) > u32::MAX as u64 {
            return Err(StoreError::InvalidArgument(format!("a {total}-byte file needs a larger shard size than {shard_size}")));
        }
        let mut record = previous.unwrap_or_else(|| ModelRecord {
            id: id.into(),
            name: name.into(),
            source,
            total_size: total,
            shard_size,
            shards_stored: 0,
            complete: false,
            summary: None,
            version_tag: opened.tag.clone(),
        });

        // A resumed import whose header spans more shards than were stored: re-read them.
        let mut header = HeaderCheck::default();
        if record.summary.is_none() {
            for index in 0..record.shards_stored {
                header.append(&self.read_shard(id, index).await?);
            }
        }

        on_progress(&Progress::of(&record));
        let mut shard = ShardBuilder::new(record.shard_len(record.shards_stored));
        loop {
            if signal.aborted() {
                return Err(aborted_at(record.stored_bytes(), total));
            }
            let chunk = match opened.source.next_chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => return Err(check(e, record.stored_bytes(), total)),
            };
            let (len, mut off) = (chunk.length(), 0);
            while off < len {
                if record.shards_stored >= record.shard_count() {
                    return Err(StoreError::BadResponse(format!("more than the declared {total} bytes")));
                }
                off += shard.push(&chunk, off);
                if shard.is_full() {
                    self.store_shard(&mut record, &shard.take(), &mut header, signal).await?;
                    on_progress(&Progress::of(&record));
                    shard = ShardBuilder::new(record.shard_len(record.shards_stored));
                }
            }
        }
        if !record.complete {
            return Err(StoreError::Network(format!("the file ended after {} of {total} bytes", record.stored_bytes())));
        }
        Ok(record)
    }

    /// Validate (while the header is incomplete) and write the next shard with its progress.
    async fn store_shard(
        &self,
        record: &mut ModelRecord,
        shard: &Uint8Array,
        header: &mut HeaderCheck,
        signal: &AbortSignal,
    ) -> Result<(), StoreError> {
        let index = record.shards_stored;
        let mut next = record.clone();
        next.shards_stored += 1;
        if next.summary.is_none() {
            header.append(shard);
            match header.check(record.total_size) {
                Ok(summary) => next.summary = summary,
                Err(reason) => {
                    // Nothing of a refused file is kept, so nothing half-made is ever listed.
                    self.remove(&record.id).await?;
                    return Err(StoreError::Refused(reason));
                }
            }
            if next.summary.is_none() && next.shards_stored == next.shard_count() {
                self.remove(&record.id).await?;
                return Err(StoreError::Refused("the GGUF header does not end before the file does".into()));
            }
        }
        next.complete = next.shards_stored == next.shard_count() && next.summary.is_some();
        if signal.aborted() {
            return Err(StoreError::Aborted { id: record.id.clone(), stored: record.stored_bytes(), total: record.total_size });
        }
        match self.write_shard(&next, index, shard).await {
            Ok(()) => {
                *record = next;
                Ok(())
            }
            // The failed transaction wrote nothing: the record still points at this shard, so
            // the import resumes here once space is freed.
            Err(e) if e.is_quota() => {
                let needed = record.total_size - record.stored_bytes();
                Err(StoreError::quota(needed, self.available().await))
            }
            Err(e) => Err(e),
        }
    }
}

/// The header prefix, copied into wasm memory only until the header has been validated
/// (Llama 3's is ~10 MB, usually inside the first shard).
#[derive(Default)]
struct HeaderCheck {
    prefix: Vec<u8>,
    /// The prefix length [`gguf::parse`] asked for last time.
    needed: u64,
}

impl HeaderCheck {
    fn append(&mut self, shard: &Uint8Array) {
        let old = self.prefix.len();
        self.prefix.resize(old + shard.length() as usize, 0);
        shard.copy_to(&mut self.prefix[old..]);
    }

    /// `Ok(Some)` once the header parses and describes a supported Llama model, `Ok(None)` while
    /// it needs more bytes, `Err(reason)` to refuse the file.
    fn check(&mut self, total: u64) -> Result<Option<GgufSummary>, String> {
        let have = self.prefix.len() as u64;
        if have < self.needed && have < total {
            return Ok(None);
        }
        match gguf::parse(&self.prefix, total).map_err(|e| e.to_string())? {
            Parsed::NeedMore { needed } => {
                // Wait for at least twice the bytes before parsing again, so small shards under
                // a 10 MB header cost a logarithmic number of parses, not one per shard. The cap
                // keeps a hostile header from growing the prefix past what parse accepts.
                self.needed = needed.max(have.saturating_mul(2)).min(gguf::MAX_HEADER_BYTES);
                Ok(None)
            }
            Parsed::Complete(file) => {
                let config = LlamaConfig::from_gguf(&file).map_err(|e| e.to_string())?;
                self.prefix = Vec::new();
                Ok(Some(summarize(&file, &config)))
            }
        }
    }
}

fn summarize(file: &GgufFile, config: &LlamaConfig) -> GgufSummary {
    let mut tensor_types: Vec<String> = Vec::new();
    for t in &file.tensors {
        let ty = t.ty.to_string();
        if !tensor_types.contains(&ty) {
            tensor_types.push(ty);
        }
    }
    GgufSummary {
        architecture: file.get_str("general.architecture").ok().flatten().unwrap_or("llama").to_string(),
        name: file.get_str("general.name").ok().flatten().map(str::to_string),
        gguf_version: file.version,
        tensor_count: file.tensors.len(),
        tensor_types,
        parameters: file.tensors.iter().map(|t| t.elements()).sum(),
        data_offset: file.data_offset,
        n_layers: config.n_layers,
        dim: config.dim,
        n_heads: config.n_heads,
        n_kv_heads: config.n_kv_heads,
        vocab_size: config.vocab_size,
        context_length: config.context_length,
    }
}

/// One shard being assembled from chunks, in JS memory.
struct ShardBuilder {
    buf: Option<Uint8Array>,
    len: u32,
    filled: u32,
}

impl ShardBuilder {
    fn new(len: u32) -> Self {
        ShardBuilder { buf: None, len, filled: 0 }
    }

    /// Take as much of `chunk[off..]` as fits; returns how many bytes were taken.
    fn push(&mut self, chunk: &Uint8Array, off: u32) -> u32 {
        let n = (chunk.length() - off).min(self.len - self.filled);
        // A chunk that is exactly this shard (Blob slices) is stored as it is. It must own its
        // whole buffer: IndexedDB clones a view's entire underlying buffer.
        let whole = self.filled == 0 && off == 0 && n == self.len && n == chunk.length();
        if whole && chunk.byte_offset() == 0 && chunk.buffer().byte_length() == n {
            self.buf = Some(chunk.clone());
        } else {
            let len = self.len;
            let buf = self.buf.get_or_insert_with(|| Uint8Array::new_with_length(len));
            buf.set(&chunk.subarray(off, off + n), self.filled);
        }
        self.filled += n;
        n
    }

    fn is_full(&self) -> bool {
        self.len > 0 && self.filled == self.len
    }

    fn take(&mut self) -> Uint8Array {
        self.filled = 0;
        self.buf.take().unwrap_or_else(|| Uint8Array::new_with_length(0))
    }
}

/// Registers an import as in flight (for `cancel_import` and `delete`), links the caller's
/// AbortSignal to it, and undoes both when the import ends however it ends.
struct ImportGuard<'a> {
    store: &'a Store,
    id: String,
    controller: AbortController,
    link: Option<(AbortSignal, Closure<dyn FnMut()>)>,
}

impl<'a> ImportGuard<'a> {
    fn begin(store: &'a Store, id: &str, abort: Option<&AbortSignal>) -> Result<Self, StoreError> {
        if store.active.borrow().contains_key(id) {
            return Err(StoreError::Busy(id.into()));
        }
        let controller = AbortController::new().map_err(|e| StoreError::from_js(&e, "starting an import"))?;
        let link = match abort {
            Some(signal) if signal.aborted() => {
                controller.abort();
                None
            }
            Some(signal) => {
                let inner = controller.clone();
                let cb = Closure::<dyn FnMut()>::new(move || inner.abort());
                signal
                    .add_event_listener_with_callback("abort", cb.as_ref().unchecked_ref())
                    .map_err(|e| StoreError::from_js(&e, "starting an import"))?;
                Some((signal.clone(), cb))
            }
            None => None,
        };
        store.active.borrow_mut().insert(id.to_string(), controller.clone());
        Ok(ImportGuard { store, id: id.to_string(), controller, link })
    }

    fn signal(&self) -> AbortSignal {
        self.controller.signal()
    }
}

impl Drop for ImportGuard<'_> {
    fn drop(&mut self) {
        self.store.active.borrow_mut().remove(&self.id);
        if let Some((signal, cb)) = &self.link {
            let _ = signal.remove_event_listener_with_callback("abort", cb.as_ref().unchecked_ref());
        }
    }
}
