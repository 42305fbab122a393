//! The store's error type, and its conversion to a JS `Error` at the wasm boundary.

use wasm_bindgen::{JsCast, JsValue};
use web_sys::DomException;

/// Everything that can go wrong while storing, importing or reading a model.
///
/// Messages are written for the person in front of the page: each says what happened and what
/// to do next. The partial import survives every error except a refusal, so "import again"
/// always resumes.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum StoreError {
    #[error("browser storage (IndexedDB) is not available here: {0}. Private browsing or disabled site data can cause this; allow site storage and reload")]
    Unavailable(String),
    /// The message says how much to free; see [`StoreError::quota`].
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("no model {0:?} in the store")]
    NotFound(String),
    #[error("model {id:?} is incomplete ({stored} of {total} bytes stored); import it again to resume before loading it")]
    Incomplete { id: String, stored: u64, total: u64 },
    #[error("shard {index} of model {id:?} is missing or damaged in storage; delete the model and import it again")]
    BadShard { id: String, index: u32 },
    #[error("a different model is already stored as {0:?}; delete it first or import under another id")]
    Exists(String),
    #[error("model {0:?} is already being imported")]
    Busy(String),
    /// The file is not one Hearth can run; nothing of it is kept.
    #[error("this file cannot be used: {0}")]
    Refused(String),
    #[error("import of {id:?} cancelled after {stored} of {total} bytes; import it again to resume")]
    Aborted { id: String, stored: u64, total: u64 },
    #[error("download failed: {0}; import again to resume where it stopped")]
    Network(String),
    #[error("the server answered {0}")]
    BadResponse(String),
    #[error("could not read the file: {0}; choose the file again to resume")]
    Read(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("storage error: {0}")]
    Db(String),
}

impl StoreError {
    /// The quota error, with how much to free. `needed` is what the rest of the import needs and
    /// `available` what the browser says is left (`None` when it would not say).
    pub fn quota(needed: u64, available: Option<u64>) -> Self {
        const MB: u64 = 1_000_000;
        let free = needed.saturating_sub(available.unwrap_or(0)).max(1).div_ceil(MB);
        StoreError::QuotaExceeded(format!(
            "storage is full: free {free} MB or delete a model; the partial import can be resumed"
        ))
    }

    /// Classify an exception thrown by a browser API. `what` names the operation for messages.
    ///
    /// A `QuotaExceededError` (a `DOMException` by name, or its newer subclass) always becomes
    /// [`StoreError::QuotaExceeded`] so that callers can keep the partial import resumable.
    pub fn from_js(err: &JsValue, what: &str) -> Self {
        let (name, message) = js_error_parts(err);
        match name.as_str() {
            "QuotaExceededError" => StoreError::quota(0, None),
            "InvalidStateError" | "UnknownError" if message.contains("backing store") => {
                StoreError::Unavailable(format!("{what}: {message}"))
            }
            _ => StoreError::Db(format!("{what} failed: {name}: {message}")),
        }
    }

    /// A short name for the JS `Error`, so the page can branch on `err.name`.
    pub fn js_name(&self) -> &'static str {
        match self {
            StoreError::QuotaExceeded(_) => "QuotaExceededError",
            StoreError::Aborted { .. } => "AbortError",
            StoreError::Refused(_) => "UnsupportedModelError",
            StoreError::NotFound(_) => "NotFoundError",
            StoreError::Network(_) | StoreError::BadResponse(_) => "NetworkError",
            StoreError::InvalidArgument(_) => "TypeError",
            _ => "StoreError",
        }
    }

    pub fn is_quota(&self) -> bool {
        matches!(self, StoreError::QuotaExceeded(_))
    }
}

/// `name` and `message` of a DOMException or JS Error (or the string form of anything else).
pub(crate) fn js_error_parts(err: &JsValue) -> (String, String) {
    if let Some(e) = err.dyn_ref::<DomException>() {
        return (e.name(), e.message());
    }
    if let Some(e) = err.dyn_ref::<js_sys::Error>() {
        return (String::from(e.name()), String::from(e.message()));
    }
    (String::new(), err.as_string().unwrap_or_else(|| format!("{err:?}")))
}

/// Convert at the wasm boundary: a JS `Error` whose `name` is [`StoreError::js_name`].
impl From<StoreError> for JsValue {
    fn from(e: StoreError) -> JsValue {
        let js = js_sys::Error::new(&e.to_string());
        js.set_name(e.js_name());
        js.into()
    }
}
