//! `ModelStore`: the store's JavaScript API. [`StoreError`] becomes a JS `Error` here and only
//! here (its `name` tells the page what happened: `QuotaExceededError`, `AbortError`,
//! `UnsupportedModelError`, `NotFoundError`, `NetworkError`, `TypeError`, `StoreError`).
//!
//! ```js
//! const store = await ModelStore.open();
//! await ModelStore.persist();
//! const ctl = new AbortController();
//! const rec = await store.importUrl(url, "llama3-8b-q4km", {
//!   onProgress: (p) => bar.value = p.storedBytes / p.totalBytes, signal: ctl.signal });
//! await store.importFile(file, "my-model", { shardSize: 32 << 20 });   // File from a picker or a drop
//! for (const m of await store.list()) console.log(m.id, m.totalSize, m.ready);
//! ```

use super::error::StoreError;
use super::import::Progress;
use super::store::{Store, DEFAULT_SHARD_SIZE};
use js_sys::{Array, Function, Object, Promise, Reflect};
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;
use web_sys::{AbortSignal, Blob, File};

#[wasm_bindgen]
pub struct ModelStore {
    inner: Rc<Store>,
}

#[wasm_bindgen]
impl ModelStore {
    /// Open the model store (database `name`, default "hearth").
    pub async fn open(name: Option<String>) -> Result<ModelStore, JsValue> {
        let store = match name {
            Some(name) => Store::open_named(&name).await?,
            None => Store::open().await?,
        };
        Ok(ModelStore { inner: Rc::new(store) })
    }

    /// TEST HOOK: a store that raises QuotaExceededError past `budgetBytes` of shards.
    #[wasm_bindgen(js_name = openWithTestBudget)]
    pub async fn open_with_test_budget(name: String, budget_bytes: f64) -> Result<ModelStore, JsValue> {
        let budget = non_negative_int(budget_bytes, "budgetBytes")?;
        Ok(ModelStore { inner: Rc::new(Store::open_with_test_budget(&name, budget).await?) })
    }

    /// Delete a whole store database (close stores open on it first).
    #[wasm_bindgen(js_name = deleteDatabase)]
    pub async fn delete_database(name: String) -> Result<(), JsValue> {
        Ok(Store::delete_database(&name).await?)
    }

    #[wasm_bindgen(js_name = defaultShardSize)]
    pub fn default_shard_size() -> u32 {
        DEFAULT_SHARD_SIZE
    }

    /// `navigator.storage.persist()`; resolves `false` when refused or unsupported.
    pub async fn persist() -> Result<bool, JsValue> {
        Ok(Store::persist().await?)
    }

    /// `navigator.storage.estimate()` as `{ usage, quota }` in bytes.
    pub async fn estimate() -> Result<JsValue, JsValue> {
        let est = Store::estimate().await?;
        let obj = Object::new();
        set(&obj, "usage", est.usage.into());
        set(&obj, "quota", est.quota.into());
        Ok(obj.into())
    }

    /// Every model record (complete or not): `{ id, name, source, totalSize, shardSize,
    /// shardsStored, shardCount, storedBytes, complete, ready, summary, versionTag }`.
    pub fn list(&self) -> Promise {
        let store = self.inner.clone();
        future_to_promise(async move {
            let list = store.list().await?;
            let out = Array::new();
            for record in &list {
                out.push(&record.to_js()?);
            }
            Ok(out.into())
        })
    }

    /// One model record, or `null`.
    pub fn model(&self, id: String) -> Promise {
        let store = self.inner.clone();
        future_to_promise(async move {
            match store.model(&id).await? {
                Some(record) => Ok(record.to_js()?),
                None => Ok(JsValue::NULL),
            }
        })
    }

    /// Delete a model (cancelling its import); resolves whether it existed.
    pub fn delete(&self, id: String) -> Promise {
        let store = self.inner.clone();
        future_to_promise(async move { Ok(store.delete(&id).await?.into()) })
    }

    /// Import or resume the GGUF at `url`. Options: `{ shardSize, onProgress, signal }`.
    /// Resolves the complete record.
    #[wasm_bindgen(js_name = importUrl)]
    pub fn import_url(&self, url: String, id: String, options: Option<Object>) -> Promise {
        let store = self.inner.clone();
        future_to_promise(async move {
            let opts = ImportOptions::read(options.as_ref())?;
            let mut report = opts.reporter();
            let record = store.import_url(&url, &id, opts.shard_size, &mut report, opts.signal.as_ref()).await?;
            Ok(record.to_js()?)
        })
    }

    /// Import or resume a local `File` (picker or drag-and-drop) or `Blob`, read slice by slice.
    /// Options: `{ shardSize, onProgress, signal, name }` (`name` defaults to the file's name).
    #[wasm_bindgen(js_name = importFile)]
    pub fn import_file(&self, file: Blob, id: String, options: Option<Object>) -> Promise {
        let store = self.inner.clone();
        future_to_promise(async move {
            let opts = ImportOptions::read(options.as_ref())?;
            let name = match (&opts.name, file.dyn_ref::<File>()) {
                (Some(name), _) => name.clone(),
                (None, Some(f)) => f.name(),
                (None, None) => id.clone(),
            };
            let mut report = opts.reporter();
            let record = store.import_blob(&file, &id, &name, opts.shard_size, &mut report, opts.signal.as_ref()).await?;
            Ok(record.to_js()?)
        })
    }

    /// Cancel this page's in-flight import of `id` (it stays resumable); returns whether one ran.
    #[wasm_bindgen(js_name = cancelImport)]
    pub fn cancel_import(&self, id: &str) -> bool {
        self.inner.cancel_import(id)
    }

    /// Shard `index` of model `id` as a `Uint8Array`.
    #[wasm_bindgen(js_name = readShard)]
    pub fn read_shard(&self, id: String, index: u32) -> Promise {
        let store = self.inner.clone();
        future_to_promise(async move { Ok(store.read_shard(&id, index).await?.into()) })
    }

    pub fn close(&self) {
        self.inner.close();
    }
}

impl ModelStore {
    /// The Rust store behind this object, for the engine's loader.
    pub fn store(&self) -> Rc<Store> {
        self.inner.clone()
    }
}

struct ImportOptions {
    shard_size: u32,
    on_progress: Option<Function>,
    signal: Option<AbortSignal>,
    name: Option<String>,
}

impl ImportOptions {
    fn read(options: Option<&Object>) -> Result<Self, StoreError> {
        let mut opts = ImportOptions { shard_size: DEFAULT_SHARD_SIZE, on_progress: None, signal: None, name: None };
        let Some(o) = options else { return Ok(opts) };
        let get = |key: &str| Reflect::get(o, &key.into()).ok().filter(|v| !v.is_undefined() && !v.is_null());
        let bad = |what: &str| StoreError::InvalidArgument(what.to_string());
        if let Some(v) = get("shardSize") {
            let n = v.as_f64().ok_or_else(|| bad("options.shardSize must be a number of bytes"))?;
            opts.shard_size = u32::try_from(non_negative_int(n, "options.shardSize")?)
                .map_err(|_| bad("options.shardSize is too large"))?;
        }
        if let Some(v) = get("onProgress") {
            opts.on_progress = Some(v.dyn_into().map_err(|_| bad("options.onProgress must be a function"))?);
        }
        if let Some(v) = get("signal") {
            opts.signal = Some(v.dyn_into().map_err(|_| bad("options.signal must be an AbortSignal"))?);
        }
        if let Some(v) = get("name") {
            opts.name = Some(v.as_string().ok_or_else(|| bad("options.name must be a string"))?);
        }
        Ok(opts)
    }

    /// The progress callback as the importer wants it. A throwing callback does not stop the
    /// import: the UI failing to draw a bar is no reason to lose a download.
    fn reporter(&self) -> impl FnMut(&Progress) {
        let callback = self.on_progress.clone();
        move |p: &Progress| {
            if let Some(f) = &callback {
                let obj = Object::new();
                set(&obj, "id", p.id.as_str().into());
                set(&obj, "storedBytes", (p.stored_bytes as f64).into());
                set(&obj, "totalBytes", (p.total_bytes as f64).into());
                set(&obj, "shardsStored", p.shards_stored.into());
                set(&obj, "shardCount", p.shard_count.into());
                let _ = f.call1(&JsValue::NULL, &obj);
            }
        }
    }
}

fn set(obj: &Object, key: &str, value: JsValue) {
    // Setting a fresh plain object's own property cannot throw.
    let _ = Reflect::set(obj, &key.into(), &value);
}

fn non_negative_int(n: f64, what: &str) -> Result<u64, StoreError> {
    if n.is_finite() && n >= 0.0 && n.fract() == 0.0 && n <= 9_007_199_254_740_991.0 {
        Ok(n as u64)
    } else {
        Err(StoreError::InvalidArgument(format!("{what} must be a non-negative integer, not {n}")))
    }
}
