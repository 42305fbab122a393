//! The browser side of Hearth (wasm32 only): the IndexedDB model store and its importer.
//!
//! Weights never sit whole in wasm memory: a model is stored as fixed-size shards in IndexedDB,
//! imported from a URL or a local file one shard at a time, and read back one shard at a time
//! by the loader. The engine API (`engine.rs`) is added next to these modules.

pub mod engine;
pub mod error;
mod idb;
pub mod import;
pub mod model_store;
mod source;
pub mod store;

pub use engine::WebEngine;
pub use error::StoreError;
pub use import::Progress;
pub use model_store::ModelStore;
pub use store::{GgufSummary, ModelRecord, ModelSource, StorageEstimate, Store, DEFAULT_SHARD_SIZE};
