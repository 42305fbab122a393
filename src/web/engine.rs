//! `WebEngine`: the engine's JavaScript API, run inside a Web Worker.
//!
//! ```js
//! const engine = await WebEngine.create();              // rejects if WebGPU is unavailable
//! await engine.load("smollm2", ({phase, bytes, total}) => bar.value = bytes / total,
//!                   {contextLength: 4096});
//! const r = await engine.chat([{role: "user", content: "Hi"}], {temperature: 0}, (t) => out.append(t));
//! engine.abort(); engine.unload(); engine.stats();
//! ```
//!
//! Loading reads the model's shards from IndexedDB one at a time into one reused buffer and
//! streams each into GPU buffers through the same [`GpuLoader`] the native CLI uses, so wasm
//! memory holds about one shard plus the header and tokenizer, whatever the model's size.

use super::store::Store;
use crate::chat::{ChatTemplate, Message};
use crate::engine::{Backend, ChatSession, EngineError};
use crate::gguf::{self, GgufFile, Parsed};
use crate::gpu::backend::{GpuBackend, GpuLoader, LoadPhase};
use crate::gpu::{Gpu, GpuError, GpuOptions};
use crate::model::config::LlamaConfig;
use crate::sampling::SamplingParams;
use crate::tokenizer::Tokenizer;
use js_sys::{Function, Promise, JSON};
use serde::Deserialize;
use serde_json::json;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::future_to_promise;

/// A model ready to chat: the GPU backend, its tokenizer and chat template.
pub struct LoadedModel {
    pub id: String,
    pub backend: GpuBackend,
    pub tokenizer: Tokenizer,
    pub template: ChatTemplate,
    pub session: ChatSession,
    pub load_seconds: f64,
    /// wasm memory after loading (it only grows, so this is the load's peak).
    pub wasm_memory_bytes: u64,
}

/// Bytes of wasm linear memory right now.
pub fn wasm_memory_bytes() -> u64 {
    wasm_bindgen::memory()
        .dyn_into::<js_sys::WebAssembly::Memory>()
        .map(|m| m.buffer().unchecked_into::<js_sys::ArrayBuffer>().byte_length() as u64)
        .unwrap_or(0)
}

/// Seconds on a monotonic-enough clock (`Date.now()` works in workers and pages alike).
fn now() -> f64 {
    js_sys::Date::now() / 1000.0
}

fn err(e: impl std::fmt::Display) -> EngineError {
    EngineError::Backend(e.to_string())
}

/// Load stored model `id` onto `gpu`: parse the header from the first shard(s), build the
/// tokenizer and template, then stream shard after shard into GPU buffers.
pub async fn load_from_store(
    store: &Store,
    gpu: &Gpu,
    id: &str,
    context: Option<u64>,
    on_progress: &mut dyn FnMut(LoadPhase, u64, u64),
) -> Result<LoadedModel, EngineError> {
    let t0 = now();
    let record = store.ready_model(id).await.map_err(err)?;
    let total = record.total_size;
    let shards = record.shard_count();
    on_progress(LoadPhase::Reading, 0, total);

    // The header: whole shards until it parses (Llama 3's ~10 MB header fits in the first).
    // The first shard is read straight into `head`, so one shard is in memory, not two.
    let mut head = Vec::new();
    let mut shard = Vec::new();
    let mut next = 0u32;
    let header: GgufFile = loop {
        if next >= shards {
            return Err(err(format!("model {id:?}: the stored file ends inside its GGUF header")));
        }
        store.read_shard_into(id, next, &mut shard).await.map_err(err)?;
        if head.is_empty() {
            std::mem::swap(&mut head, &mut shard);
        } else {
            head.extend_from_slice(&shard);
        }
        next += 1;
        match gguf::parse(&head, total).map_err(err)? {
            Parsed::Complete(file) => break *file,
            Parsed::NeedMore { .. } => continue,
        }
    };
    let config = LlamaConfig::from_gguf(&header)?;
    let tokenizer = Tokenizer::from_gguf(&header).map_err(err)?;
    let template = ChatTemplate::from_gguf(&header, &tokenizer).map_err(err)?;
    let context = context.unwrap_or(4096).min(config.context_length as u64).max(1);

    let mut loader = GpuLoader::new(gpu, header).await?;
    loader.push(&head)?;
    drop(shard);
    // The header's buffer becomes the shard buffer: one allocation for the whole load.
    let mut shard = head;
    on_progress(LoadPhase::Uploading, loader.position(), total);
    for index in next..shards {
        store.read_shard_into(id, index, &mut shard).await.map_err(err)?;
        loader.push(&shard)?;
        on_progress(LoadPhase::Uploading, loader.position(), total);
    }
    drop(shard);
    on_progress(LoadPhase::Compiling, total, total);
    let backend = loader.finish(context).await?;
    Ok(LoadedModel {
        id: id.to_string(),
        backend,
        tokenizer,
        template,
        session: ChatSession::new(None),
        load_seconds: now() - t0,
        wasm_memory_bytes: wasm_memory_bytes(),
    })
}

/// Chat options from JavaScript (camelCase); absent fields take the CLI's defaults.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ChatOptions {
    temperature: Option<f32>,
    top_k: Option<usize>,
    top_p: Option<f32>,
    min_p: Option<f32>,
    repeat_penalty: Option<f32>,
    seed: Option<u64>,
    max_tokens: Option<usize>,
    context_length: Option<u64>,
}

impl ChatOptions {
    fn params(&self) -> SamplingParams {
        let d = SamplingParams::default();
        SamplingParams {
            temperature: self.temperature.unwrap_or(d.temperature),
            top_k: self.top_k.unwrap_or(d.top_k),
            top_p: self.top_p.unwrap_or(d.top_p),
            min_p: self.min_p.unwrap_or(d.min_p),
            repeat_penalty: self.repeat_penalty.unwrap_or(d.repeat_penalty),
            seed: self.seed.unwrap_or(d.seed),
            ..d
        }
    }
}

/// A JS value as a Rust type, through JSON (messages and options are small).
fn from_js<T: for<'de> Deserialize<'de> + Default>(v: &JsValue, what: &str) -> Result<T, JsValue> {
    if v.is_undefined() || v.is_null() {
        return Ok(T::default());
    }
    let text: String = JSON::stringify(v).map_err(|_| js_error(&format!("{what} is not JSON-serializable")))?.into();
    serde_json::from_str(&text).map_err(|e| js_error(&format!("{what}: {e}")))
}

fn to_js(v: &serde_json::Value) -> JsValue {
    JSON::parse(&v.to_string()).unwrap_or(JsValue::NULL)
}

fn js_error(message: &str) -> JsValue {
    js_sys::Error::new(message).into()
}

#[derive(Default, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Stats {
    prefill_tok_s: f64,
    decode_tok_s: f64,
    context_tokens: usize,
    context_length: usize,
    load_seconds: f64,
    wasm_memory_bytes: u64,
    peak_wasm_memory_bytes: u64,
    model: Option<String>,
}

/// The engine as JavaScript sees it. State lives behind `Rc`s so that methods can return
/// Promises while `abort()` and `stats()` stay callable during a generation.
#[wasm_bindgen]
pub struct WebEngine {
    gpu: Gpu,
    model: Rc<RefCell<Option<LoadedModel>>>,
    abort: Rc<Cell<bool>>,
    stats: Rc<RefCell<Stats>>,
}

#[wasm_bindgen]
impl WebEngine {
    /// Request a WebGPU device. Rejects with an Error saying what to do when WebGPU is missing.
    pub async fn create() -> Result<WebEngine, JsValue> {
        console_error_panic_hook::set_once();
        let gpu = Gpu::new(&GpuOptions::default()).await.map_err(|e| match e {
            GpuError::NoAdapter(_) => js_error(
                "WebGPU is not available in this browser. Use a recent Chrome or Edge (113+) on desktop, \
                 or enable WebGPU (chrome://flags/#enable-unsafe-webgpu on Linux).",
            ),
            other => js_error(&other.to_string()),
        })?;
        Ok(WebEngine {
            gpu,
            model: Rc::new(RefCell::new(None)),
            abort: Rc::new(Cell::new(false)),
            stats: Rc::new(RefCell::new(Stats::default())),
        })
    }

    /// The adapter and the limits chosen: `{adapter, backend, maxStorageBufferBindingSize, ...}`.
    #[wasm_bindgen(js_name = adapterInfo)]
    pub fn adapter_info(&self) -> JsValue {
        to_js(&serde_json::to_value(self.gpu.report()).unwrap_or_default())
    }

    /// Load stored model `modelId`; `onProgress({phase, bytes, total})` with phase "reading",
    /// "uploading" or "compiling"; options `{contextLength}` (default 4096, at most the model's).
    pub fn load(&self, model_id: String, on_progress: Option<Function>, options: JsValue) -> Promise {
        let (gpu, model, stats) = (self.gpu.clone(), self.model.clone(), self.stats.clone());
        future_to_promise(async move {
            let options: ChatOptions = from_js(&options, "load options")?;
            let Ok(mut slot) = model.try_borrow_mut() else {
                return Err(js_error("the engine is busy: wait for the reply to finish or abort it first"));
            };
            // Free the previous model's GPU memory before allocating the next.
            *slot = None;
            let store = Store::open().await?;
            let mut report = |phase: LoadPhase, bytes: u64, total: u64| {
                if let Some(f) = &on_progress {
                    let p = json!({"phase": phase, "bytes": bytes, "total": total});
                    let _ = f.call1(&JsValue::NULL, &to_js(&p));
                }
            };
            let loaded = load_from_store(&store, &gpu, &model_id, options.context_length, &mut report).await;
            store.close();
            let loaded = loaded.map_err(|e| js_error(&e.to_string()))?;
            {
                let mut s = stats.borrow_mut();
                *s = Stats {
                    load_seconds: loaded.load_seconds,
                    wasm_memory_bytes: loaded.wasm_memory_bytes,
                    peak_wasm_memory_bytes: loaded.wasm_memory_bytes,
                    context_length: loaded.backend.context_len(),
                    model: Some(model_id.clone()),
                    ..Stats::default()
                };
            }
            *slot = Some(loaded);
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Reply to `messages` (`[{role, content}]`, the whole conversation); `onToken(text)` gets
    /// each piece of text. Resolves to `{text, promptTokens, generatedTokens, prefillTokS,
    /// decodeTokS, finishReason}`.
    pub fn chat(&self, messages: JsValue, options: JsValue, on_token: Option<Function>) -> Promise {
        let (model, abort, stats) = (self.model.clone(), self.abort.clone(), self.stats.clone());
        future_to_promise(async move {
            let messages: Vec<Message> = from_js(&messages, "messages")?;
            let options: ChatOptions = from_js(&options, "chat options")?;
            if messages.is_empty() {
                return Err(js_error("chat needs at least one message"));
            }
            let Ok(mut slot) = model.try_borrow_mut() else {
                return Err(js_error("the engine is busy with another request"));
            };
            let Some(m) = slot.as_mut() else {
                return Err(js_error("no model is loaded: load one first"));
            };
            if let Some(n) = options.context_length {
                if n as usize != m.backend.context_len() {
                    return Err(js_error(&format!(
                        "the model was loaded with a {}-token context; load it again to use {n}",
                        m.backend.context_len()
                    )));
                }
            }
            abort.set(false);
            let mut on_text = |piece: &str| {
                if let Some(f) = &on_token {
                    let _ = f.call1(&JsValue::NULL, &JsValue::from_str(piece));
                }
                !abort.get()
            };
            let LoadedModel { backend, tokenizer, template, session, .. } = m;
            let params = options.params();
            let max_tokens = options.max_tokens.unwrap_or(512);
            let reply = session.respond(backend, tokenizer, template, &messages, &params, max_tokens, &now, &mut on_text).await;
            let reply = reply.map_err(|e| js_error(&e.to_string()))?;
            let s = &reply.stats;
            {
                let mut st = stats.borrow_mut();
                st.prefill_tok_s = s.prefill_tok_s();
                st.decode_tok_s = s.decode_tok_s();
                st.context_tokens = session.cached_tokens();
                st.wasm_memory_bytes = wasm_memory_bytes();
                st.peak_wasm_memory_bytes = st.peak_wasm_memory_bytes.max(st.wasm_memory_bytes);
            }
            Ok(to_js(&json!({
                "text": reply.text,
                "tokens": reply.tokens,
                "promptTokens": s.prompt_tokens,
                "generatedTokens": s.generated_tokens,
                "prefillTokS": s.prefill_tok_s(),
                "decodeTokS": s.decode_tok_s(),
                "finishReason": s.finish_reason,
            })))
        })
    }

    /// Stop the reply in progress after the current token.
    pub fn abort(&self) {
        self.abort.set(true);
    }

    /// Drop the loaded model and its GPU memory.
    pub fn unload(&self) -> Result<(), JsValue> {
        let mut slot = self.model.try_borrow_mut().map_err(|_| js_error("the engine is busy: abort the reply first"))?;
        *slot = None;
        self.stats.borrow_mut().model = None;
        Ok(())
    }

    /// `{prefillTokS, decodeTokS, contextTokens, contextLength, loadSeconds, wasmMemoryBytes,
    /// peakWasmMemoryBytes, model}`.
    pub fn stats(&self) -> JsValue {
        let mut s = self.stats.borrow().clone();
        s.wasm_memory_bytes = wasm_memory_bytes();
        to_js(&serde_json::to_value(s).unwrap_or_default())
    }
}
