//! Byte sources for the importer: a URL read by a streamed `fetch` (with `Range` to resume) and a
//! `Blob`/`File` read by `Blob.slice`. Both hand out JS `Uint8Array` chunks, so file bytes go
//! from the network or disk to IndexedDB without passing through wasm memory; the importer only
//! copies the header prefix it validates.

use super::error::{js_error_parts, StoreError};
use super::store::ModelSource;
use js_sys::{Function, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortSignal, Blob, File, Headers, ReadableStreamDefaultReader, RequestCache, RequestInit, Response};

/// A source opened at some byte offset.
pub(crate) struct Opened<S> {
    pub source: S,
    /// The file offset of the first byte `source` yields. A server that ignores `Range` starts
    /// at 0 whatever was asked.
    pub start: u64,
    /// The whole file's length.
    pub total: u64,
    /// A version stamp (ETag, Last-Modified, File.lastModified) when there is one.
    pub tag: Option<String>,
}

/// Consecutive chunks of the file; `None` at its end.
pub(crate) trait ByteSource {
    async fn next_chunk(&mut self) -> Result<Option<Uint8Array>, StoreError>;
}

/// Something that can be read from a given offset: the importer opens it once, or twice when a
/// resume turns out impossible and it restarts from 0.
pub(crate) trait Opener {
    type Source: ByteSource;
    fn source(&self) -> ModelSource;
    /// Open at `start` (a shard boundary), reading about `chunk` bytes at a time where the
    /// source lets us choose.
    async fn open(&self, start: u64, chunk: u32) -> Result<Opened<Self::Source>, StoreError>;
}

// ---------------------------------------------------------------------------------------------
// Blob / File

pub(crate) struct BlobOpener {
    pub blob: Blob,
    pub name: String,
}

pub(crate) struct BlobSource {
    blob: Blob,
    pos: u64,
    end: u64,
    chunk: u64,
}

impl Opener for BlobOpener {
    type Source = BlobSource;

    fn source(&self) -> ModelSource {
        ModelSource::File { name: self.name.clone() }
    }

    async fn open(&self, start: u64, chunk: u32) -> Result<Opened<BlobSource>, StoreError> {
        let total = self.blob.size() as u64;
        let tag = self.blob.dyn_ref::<File>().map(|f| format!("lastModified={}", f.last_modified()));
        let start = start.min(total);
        Ok(Opened { source: BlobSource { blob: self.blob.clone(), pos: start, end: total, chunk: chunk.max(1) as u64 }, start, total, tag })
    }
}

impl ByteSource for BlobSource {
    async fn next_chunk(&mut self) -> Result<Option<Uint8Array>, StoreError> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let end = (self.pos + self.chunk).min(self.end);
        let read_err = |e: JsValue| {
            let (name, msg) = js_error_parts(&e);
            StoreError::Read(format!("{name} {msg}").trim().to_string())
        };
        // One slice per chunk: only this chunk is ever materialized, in JS memory.
        let slice = self.blob.slice_with_f64_and_f64(self.pos as f64, end as f64).map_err(read_err)?;
        let buffer = JsFuture::from(slice.array_buffer()).await.map_err(read_err)?;
        let bytes = Uint8Array::new(&buffer);
        if bytes.length() as u64 != end - self.pos {
            return Err(StoreError::Read("the file changed while it was being read".into()));
        }
        self.pos = end;
        Ok(Some(bytes))
    }
}

// ---------------------------------------------------------------------------------------------
// URL

pub(crate) struct UrlOpener {
    pub url: String,
    pub signal: AbortSignal,
}

pub(crate) struct FetchSource {
    reader: ReadableStreamDefaultReader,
}

impl Opener for UrlOpener {
    type Source = FetchSource;

    fn source(&self) -> ModelSource {
        ModelSource::Url { url: self.url.clone() }
    }

    async fn open(&self, start: u64, _chunk: u32) -> Result<Opened<FetchSource>, StoreError> {
        let init = RequestInit::new();
        init.set_method("GET");
        init.set_signal(Some(&self.signal));
        // The bytes go to IndexedDB; a second multi-gigabyte copy in the HTTP cache helps nobody.
        init.set_cache(RequestCache::NoStore);
        if start > 0 {
            let headers = Headers::new().map_err(|e| StoreError::from_js(&e, "building a request"))?;
            headers
                .set("Range", &format!("bytes={start}-"))
                .map_err(|e| StoreError::from_js(&e, "building a request"))?;
            init.set_headers(&headers);
        }
        let response = fetch(&self.url, &init).await?;
        let status = response.status();
        let headers = response.headers();
        let header = |name: &str| headers.get(name).ok().flatten();
        let content_length = header("Content-Length").and_then(|v| v.trim().parse::<u64>().ok());
        let (start, total) = match status {
            200 => {
                let total = content_length.ok_or_else(|| {
                    StoreError::BadResponse(format!(
                        "without a Content-Length for {}: the size must be known up front to store the file in shards",
                        self.url
                    ))
                })?;
                (0, total)
            }
            206 => match header("Content-Range").map(|v| parse_content_range(&v)) {
                Some(Some(range)) => range,
                Some(None) => return Err(StoreError::BadResponse(format!("with an unreadable Content-Range for {}", self.url))),
                // Content-Range is not readable cross-origin unless the server exposes it; the
                // length of what remains is, and the range is the one asked for.
                None => match content_length {
                    Some(len) => (start, start + len),
                    None => return Err(StoreError::BadResponse(format!("206 without Content-Range or Content-Length for {}", self.url))),
                },
            },
            404 | 410 => return Err(StoreError::BadResponse(format!("HTTP {status}: no file at {}; check the address", self.url))),
            _ => {
                return Err(StoreError::BadResponse(format!("HTTP {status} {} for {}", response.status_text(), self.url)));
            }
        };
        let tag = header("ETag").or_else(|| header("Last-Modified"));
        let body = response
            .body()
            .ok_or_else(|| StoreError::BadResponse(format!("with no body for {}", self.url)))?;
        let reader = ReadableStreamDefaultReader::new(&body).map_err(|e| StoreError::from_js(&e, "reading the download"))?;
        Ok(Opened { source: FetchSource { reader }, start, total, tag })
    }
}

async fn fetch(url: &str, init: &RequestInit) -> Result<Response, StoreError> {
    // `fetch` of whichever global this is (window or worker), without naming either type.
    let global = js_sys::global();
    let fetch: Function = Reflect::get(&global, &"fetch".into())
        .ok()
        .and_then(|f| f.dyn_into().ok())
        .ok_or_else(|| StoreError::Network("fetch is not available in this context".into()))?;
    let promise: js_sys::Promise = fetch
        .call2(&global, &JsValue::from_str(url), init)
        .map_err(|e| network_error(url, &e))?
        .dyn_into()
        .map_err(|_| StoreError::Network("fetch returned no promise".into()))?;
    let response = JsFuture::from(promise).await.map_err(|e| network_error(url, &e))?;
    response.dyn_into().map_err(|_| StoreError::Network("fetch returned no response".into()))
}

fn network_error(url: &str, e: &JsValue) -> StoreError {
    let (name, msg) = js_error_parts(e);
    StoreError::Network(format!(
        "could not download {url} ({name}: {msg}); check the connection, and that the server allows cross-origin downloads"
    ))
}

/// `bytes START-END/TOTAL` → (START, TOTAL).
fn parse_content_range(v: &str) -> Option<(u64, u64)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let (start, end, total) = (start.trim().parse::<u64>().ok()?, end.trim().parse::<u64>().ok()?, total.trim().parse::<u64>().ok()?);
    (start <= end && end < total).then_some((start, total))
}

impl ByteSource for FetchSource {
    async fn next_chunk(&mut self) -> Result<Option<Uint8Array>, StoreError> {
        let read_err = |e: JsValue| {
            let (name, msg) = js_error_parts(&e);
            StoreError::Network(format!("the connection broke ({name}: {msg})"))
        };
        let result = JsFuture::from(self.reader.read()).await.map_err(read_err)?;
        let done = Reflect::get(&result, &"done".into()).map_err(read_err)?.as_bool().unwrap_or(false);
        if done {
            return Ok(None);
        }
        let value = Reflect::get(&result, &"value".into()).map_err(read_err)?;
        value
            .dyn_into::<Uint8Array>()
            .map(Some)
            .map_err(|_| StoreError::Network("the download stream yielded something other than bytes".into()))
    }
}

impl Drop for FetchSource {
    fn drop(&mut self) {
        // Stop the download when the import ends early (error, abort, restart). `cancel` returns
        // a promise that may reject; awaiting it keeps the rejection off the console.
        let cancelled = self.reader.cancel();
        wasm_bindgen_futures::spawn_local(async move {
            let _ = JsFuture::from(cancelled).await;
        });
    }
}
