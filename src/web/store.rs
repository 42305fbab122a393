//! The model store: GGUF files kept in IndexedDB as fixed-size shards.
//!
//! Two object stores:
//! - `models`: one [`ModelRecord`] per model, keyed by its id (keyPath `id`);
//! - `shards`: key `[modelId, index]` → `Uint8Array` of `shardSize` bytes (the last one shorter).
//!
//! Each shard is written in its own transaction together with the model record's new progress,
//! so after a closed tab or a crash the record says exactly which shards exist and an import
//! resumes from the first missing one. A model is ready only when `complete` is set, which
//! happens in the transaction that stores its last shard.

use super::error::{js_error_parts, StoreError};
use super::idb::{self, Db};
use js_sys::{Array, Reflect, Uint8Array};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::HashMap;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, DomException, IdbDatabase, IdbKeyRange, IdbObjectStoreParameters, IdbTransactionMode, StorageManager};

pub const DB_NAME: &str = "hearth";
const DB_VERSION: u32 = 1;
const MODELS: &str = "models";
const SHARDS: &str = "shards";
/// 32 MiB: large enough that a 4.9 GB model is ~150 records, small enough that the loader's one
/// shard in wasm memory is modest.
pub const DEFAULT_SHARD_SIZE: u32 = 32 << 20;
/// Bounds on the shard size. Multiples of 4 keep every shard boundary 4-byte aligned in the file,
/// which `queue.writeBuffer` needs.
pub const MIN_SHARD_SIZE: u32 = 1024;
pub const MAX_SHARD_SIZE: u32 = 512 << 20;

/// Where a model's bytes come from; a resumed import must come from the same place.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum ModelSource {
    Url { url: String },
    File { name: String },
}

/// What the store knows of a GGUF after validating its header (written once validated).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GgufSummary {
    pub architecture: String,
    /// `general.name`, when the file has one.
    pub name: Option<String>,
    pub gguf_version: u32,
    pub tensor_count: usize,
    /// Distinct ggml tensor types, in first-use order ("Q4_K", "Q6_K", "F32").
    pub tensor_types: Vec<String>,
    pub parameters: u64,
    /// Where tensor data begins in the file.
    pub data_offset: u64,
    pub n_layers: usize,
    pub dim: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub vocab_size: usize,
    pub context_length: usize,
}

/// One model's record in the `models` store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelRecord {
    pub id: String,
    /// Display name (file name, or the last part of the URL).
    pub name: String,
    pub source: ModelSource,
    /// Bytes in the whole file.
    pub total_size: u64,
    pub shard_size: u32,
    /// Shards `0..shards_stored` are stored; the import resumes at `shards_stored`.
    pub shards_stored: u32,
    /// Every shard is stored and the header was validated: the model can be loaded.
    pub complete: bool,
    /// `None` until enough shards are stored to hold the whole GGUF header.
    pub summary: Option<GgufSummary>,
    /// The server's ETag or Last-Modified, or a File's lastModified: a resumed import checks it
    /// so that it never splices two different files together.
    pub version_tag: Option<String>,
}

impl ModelRecord {
    pub fn shard_count(&self) -> u32 {
        shard_count(self.total_size, self.shard_size)
    }

    pub fn stored_bytes(&self) -> u64 {
        (self.shards_stored as u64 * self.shard_size as u64).min(self.total_size)
    }

    /// Length of shard `index` (the last one is shorter).
    pub fn shard_len(&self, index: u32) -> u32 {
        shard_len(self.total_size, self.shard_size, index)
    }

    /// The record as a plain JS object, with the derived `storedBytes`, `shardCount` and `ready`.
    pub fn to_js(&self) -> Result<JsValue, StoreError> {
        let mut json = serde_json::to_value(self).map_err(|e| StoreError::Db(e.to_string()))?;
        if let Some(obj) = json.as_object_mut() {
            obj.insert("storedBytes".into(), self.stored_bytes().into());
            obj.insert("shardCount".into(), self.shard_count().into());
            obj.insert("ready".into(), self.complete.into());
        }
        json_to_js(&json)
    }

    fn from_js(value: &JsValue) -> Result<Self, StoreError> {
        let text = js_sys::JSON::stringify(value)
            .ok()
            .and_then(|s| s.as_string())
            .ok_or_else(|| StoreError::Db("a model record could not be read".into()))?;
        serde_json::from_str(&text).map_err(|e| StoreError::Db(format!("a model record is damaged ({e}); delete the model and import it again")))
    }
}

pub(crate) fn shard_count(total: u64, shard_size: u32) -> u32 {
    // Sizes are checked against MAX_SHARD_COUNT at import, so this fits.
    total.div_ceil(shard_size as u64) as u32
}

pub(crate) fn shard_len(total: u64, shard_size: u32, index: u32) -> u32 {
    let start = index as u64 * shard_size as u64;
    total.saturating_sub(start).min(shard_size as u64) as u32
}

/// Records are stored as plain objects (readable in devtools), built through JSON so that the
/// serde derive is the one schema.
fn json_to_js(json: &serde_json::Value) -> Result<JsValue, StoreError> {
    let text = serde_json::to_string(json).map_err(|e| StoreError::Db(e.to_string()))?;
    js_sys::JSON::parse(&text).map_err(|e| StoreError::from_js(&e, "encoding a model record"))
}

fn shard_key(id: &str, index: u32) -> JsValue {
    Array::of2(&JsValue::from_str(id), &JsValue::from(index)).into()
}

/// All shard keys of one model: `[id, 0] ..= [id, +Infinity]`.
fn shard_range(id: &str) -> Result<IdbKeyRange, StoreError> {
    let lower = Array::of2(&JsValue::from_str(id), &JsValue::from(0));
    let upper = Array::of2(&JsValue::from_str(id), &JsValue::from(f64::INFINITY));
    IdbKeyRange::bound(&lower, &upper).map_err(|e| StoreError::from_js(&e, "building a key range"))
}

fn upgrade(db: &IdbDatabase) -> Result<(), JsValue> {
    let names = db.object_store_names();
    if !names.contains(MODELS) {
        let params = IdbObjectStoreParameters::new();
        params.set_key_path(&JsValue::from_str("id"));
        db.create_object_store_with_optional_parameters(MODELS, &params)?;
    }
    if !names.contains(SHARDS) {
        db.create_object_store(SHARDS)?;
    }
    Ok(())
}

/// Usage and quota as `navigator.storage.estimate()` reports them, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct StorageEstimate {
    pub usage: f64,
    pub quota: f64,
}

/// The model store. Open one per page or worker; every method takes `&self`.
pub struct Store {
    db: Db,
    /// A test-only byte budget over stored shards, enforced by raising a real
    /// `QuotaExceededError` DOMException through the same path as the browser's own.
    budget: Option<u64>,
    /// In-flight imports in this context, so that `cancel_import` and `delete` can stop them.
    pub(crate) active: RefCell<HashMap<String, AbortController>>,
}

impl Store {
    /// Open (creating on first use) the page's model store.
    pub async fn open() -> Result<Store, StoreError> {
        Self::open_named(DB_NAME).await
    }

    /// Open the store in database `name` (tests use one database each).
    pub async fn open_named(name: &str) -> Result<Store, StoreError> {
        let db = Db::open(name, DB_VERSION, upgrade).await?;
        Ok(Store { db, budget: None, active: RefCell::new(HashMap::new()) })
    }

    /// TEST HOOK: a store that refuses shard writes past `budget` bytes of shards (all models),
    /// the way the browser refuses writes past its quota. Real quotas are per origin and far too
    /// large to fill in a test; this exercises the same error path with a small number.
    pub async fn open_with_test_budget(name: &str, budget: u64) -> Result<Store, StoreError> {
        let mut store = Self::open_named(name).await?;
        store.budget = Some(budget);
        Ok(store)
    }

    /// Delete database `name` and everything in it. Close open stores on it first.
    pub async fn delete_database(name: &str) -> Result<(), StoreError> {
        idb::delete_database(name).await
    }

    pub fn close(&self) {
        self.db.close();
    }

    /// Every model record, complete or not, ordered by id.
    pub async fn list(&self) -> Result<Vec<ModelRecord>, StoreError> {
        let tx = self.db.transaction(&[MODELS], IdbTransactionMode::Readonly)?;
        let req = object_store(&tx, MODELS)?.get_all().map_err(|e| StoreError::from_js(&e, "listing models"))?;
        let all = idb::request(&req, "listing models").await?;
        let all: Array = all.dyn_into().map_err(|_| StoreError::Db("listing models returned no list".into()))?;
        all.iter().map(|v| ModelRecord::from_js(&v)).collect()
    }

    pub async fn model(&self, id: &str) -> Result<Option<ModelRecord>, StoreError> {
        let tx = self.db.transaction(&[MODELS], IdbTransactionMode::Readonly)?;
        let req = object_store(&tx, MODELS)?
            .get(&JsValue::from_str(id))
            .map_err(|e| StoreError::from_js(&e, "reading a model record"))?;
        let value = idb::request(&req, "reading a model record").await?;
        if value.is_undefined() {
            return Ok(None);
        }
        ModelRecord::from_js(&value).map(Some)
    }

    /// The record of a model that can be loaded: stored completely and validated.
    pub async fn ready_model(&self, id: &str) -> Result<ModelRecord, StoreError> {
        match self.model(id).await? {
            None => Err(StoreError::NotFound(id.into())),
            Some(r) if !r.complete => Err(StoreError::Incomplete { id: id.into(), stored: r.stored_bytes(), total: r.total_size }),
            Some(r) => Ok(r),
        }
    }

    /// Delete a model and all its shards, cancelling its import if one is running here.
    /// Returns whether there was anything to delete.
    pub async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        self.cancel_import(id);
        let existed = self.model(id).await?.is_some();
        self.remove(id).await?;
        Ok(existed)
    }

    /// Delete the record and shards of `id` in one transaction (without touching imports).
    pub(crate) async fn remove(&self, id: &str) -> Result<(), StoreError> {
        let tx = self.db.transaction(&[MODELS, SHARDS], IdbTransactionMode::Readwrite)?;
        let what = "deleting a model";
        object_store(&tx, SHARDS)?.delete(&JsValue::from(shard_range(id)?)).map_err(|e| StoreError::from_js(&e, what))?;
        object_store(&tx, MODELS)?.delete(&JsValue::from_str(id)).map_err(|e| StoreError::from_js(&e, what))?;
        idb::commit(&tx, what).await
    }

    /// Cancel this context's in-flight import of `id`; it stays resumable. Returns whether one ran.
    pub fn cancel_import(&self, id: &str) -> bool {
        match self.active.borrow().get(id) {
            Some(controller) => {
                controller.abort();
                true
            }
            None => false,
        }
    }

    /// Shard `index` of model `id` as a JS `Uint8Array` (its bytes stay out of wasm memory).
    pub async fn read_shard(&self, id: &str, index: u32) -> Result<Uint8Array, StoreError> {
        let tx = self.db.transaction(&[SHARDS], IdbTransactionMode::Readonly)?;
        let req = object_store(&tx, SHARDS)?
            .get(&shard_key(id, index))
            .map_err(|e| StoreError::from_js(&e, "reading a shard"))?;
        let value = idb::request(&req, "reading a shard").await?;
        if value.is_undefined() {
            return Err(StoreError::BadShard { id: id.into(), index });
        }
        value.dyn_into::<Uint8Array>().map_err(|_| StoreError::BadShard { id: id.into(), index })
    }

    /// Shard `index` copied into `out` (resized to the shard): the loader reuses one buffer, so
    /// wasm memory holds one shard at a time however large the model.
    pub async fn read_shard_into(&self, id: &str, index: u32, out: &mut Vec<u8>) -> Result<(), StoreError> {
        let shard = self.read_shard(id, index).await?;
        out.resize(shard.length() as usize, 0);
        shard.copy_to(out);
        Ok(())
    }

    /// Write shard `index` and the record that counts it, in one transaction.
    pub(crate) async fn write_shard(&self, record: &ModelRecord, index: u32, shard: &Uint8Array) -> Result<(), StoreError> {
        let what = "storing a shard";
        if let Some(budget) = self.budget {
            // Tests only: summing the records is cheap for their handful of small models.
            let used: u64 = self.list().await?.iter().map(ModelRecord::stored_bytes).sum();
            if used + shard.length() as u64 > budget {
                let e = DomException::new_with_message_and_name("test byte budget exceeded", "QuotaExceededError")
                    .map_err(|e| StoreError::from_js(&e, what))?;
                return Err(StoreError::from_js(&e, what));
            }
        }
        let tx = self.db.transaction(&[MODELS, SHARDS], IdbTransactionMode::Readwrite)?;
        object_store(&tx, SHARDS)?
            .put_with_key(shard, &shard_key(&record.id, index))
            .map_err(|e| StoreError::from_js(&e, what))?;
        object_store(&tx, MODELS)?.put(&record.to_js()?).map_err(|e| StoreError::from_js(&e, what))?;
        idb::commit(&tx, what).await
    }

    /// What the browser may still store for this origin, in bytes (`None` if it won't say).
    pub(crate) async fn available(&self) -> Option<u64> {
        if let Some(budget) = self.budget {
            let used: u64 = self.list().await.ok()?.iter().map(ModelRecord::stored_bytes).sum();
            return Some(budget.saturating_sub(used));
        }
        let est = Self::estimate().await.ok()?;
        Some((est.quota - est.usage).max(0.0) as u64)
    }

    /// `navigator.storage.persist()`: ask the browser not to evict the models under storage
    /// pressure. `false` when refused or unsupported (workers have no `persist`).
    pub async fn persist() -> Result<bool, StoreError> {
        let manager = storage_manager()?;
        let has_persist = Reflect::has(&manager, &"persist".into()).unwrap_or(false);
        if !has_persist {
            return Ok(false);
        }
        let promise = manager.persist().map_err(|e| StoreError::from_js(&e, "asking for persistent storage"))?;
        let granted = JsFuture::from(promise).await.map_err(|e| StoreError::from_js(&e, "asking for persistent storage"))?;
        Ok(granted.as_bool().unwrap_or(false))
    }

    /// `navigator.storage.estimate()`.
    pub async fn estimate() -> Result<StorageEstimate, StoreError> {
        let manager = storage_manager()?;
        let promise = manager.estimate().map_err(|e| StoreError::from_js(&e, "estimating storage"))?;
        let est = JsFuture::from(promise).await.map_err(|e| StoreError::from_js(&e, "estimating storage"))?;
        let num = |key: &str| Reflect::get(&est, &key.into()).ok().and_then(|v| v.as_f64()).unwrap_or(0.0);
        Ok(StorageEstimate { usage: num("usage"), quota: num("quota") })
    }
}

fn object_store(tx: &web_sys::IdbTransaction, name: &str) -> Result<web_sys::IdbObjectStore, StoreError> {
    tx.object_store(name).map_err(|e| StoreError::from_js(&e, "opening an object store"))
}

fn storage_manager() -> Result<StorageManager, StoreError> {
    let navigator = Reflect::get(&js_sys::global(), &"navigator".into())
        .map_err(|e| StoreError::Unavailable(js_error_parts(&e).1))?;
    let storage = Reflect::get(&navigator, &"storage".into()).map_err(|e| StoreError::Unavailable(js_error_parts(&e).1))?;
    storage
        .dyn_into::<StorageManager>()
        .map_err(|_| StoreError::Unavailable("navigator.storage is missing (it needs a secure context: https or localhost)".into()))
}
