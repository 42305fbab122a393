//! A small async layer over IndexedDB's event-based requests and transactions.
//!
//! Every transaction here issues all its requests synchronously and then awaits its `complete`
//! event, never awaiting between requests: a transaction auto-commits as soon as it has no
//! pending request at the end of a task, so an `await` in the middle of one is a bug waiting
//! for a slow executor. Reads await their one request.

use super::error::StoreError;
use js_sys::{Array, Promise, Reflect};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Event, EventTarget, IdbDatabase, IdbFactory, IdbOpenDbRequest, IdbRequest, IdbTransaction, IdbTransactionMode};

type Listener = Closure<dyn FnMut(Event)>;

/// Event listeners that are removed when dropped, so a future dropped mid-wait (an aborted
/// import) leaves no handler that would call a freed closure.
struct Listeners {
    target: EventTarget,
    list: Vec<(&'static str, Listener)>,
}

impl Drop for Listeners {
    fn drop(&mut self) {
        for (name, cb) in &self.list {
            let _ = self.target.remove_event_listener_with_callback(name, cb.as_ref().unchecked_ref());
        }
    }
}

/// Wait for the first of the `ok` events (Ok) or the `fail` events (Err) on `target`.
async fn wait_event(target: &EventTarget, ok: &[&'static str], fail: &[&'static str]) -> Result<(), ()> {
    let mut listeners = Listeners { target: target.clone(), list: Vec::new() };
    let promise = Promise::new(&mut |resolve, reject| {
        for (names, settle) in [(ok, resolve), (fail, reject)] {
            for &name in names {
                let settle = settle.clone();
                let cb = Listener::new(move |_ev: Event| {
                    let _ = settle.call0(&JsValue::UNDEFINED);
                });
                let _ = target.add_event_listener_with_callback(name, cb.as_ref().unchecked_ref());
                listeners.list.push((name, cb));
            }
        }
    });
    let result = JsFuture::from(promise).await;
    drop(listeners);
    result.map(|_| ()).map_err(|_| ())
}

/// Await one request's result.
pub(crate) async fn request(req: &IdbRequest, what: &str) -> Result<JsValue, StoreError> {
    match wait_event(req, &["success"], &["error"]).await {
        Ok(()) => req.result().map_err(|e| StoreError::from_js(&e, what)),
        Err(()) => Err(request_error(req, what)),
    }
}

fn request_error(req: &IdbRequest, what: &str) -> StoreError {
    match req.error() {
        Ok(Some(e)) => StoreError::from_js(&e, what),
        Ok(None) | Err(_) => StoreError::Db(format!("{what} failed")),
    }
}

/// Await a transaction's commit. Its requests are already issued; an error in any of them
/// aborts the whole transaction, and `tx.error` says why (QuotaExceededError among others).
pub(crate) async fn commit(tx: &IdbTransaction, what: &str) -> Result<(), StoreError> {
    match wait_event(tx, &["complete"], &["abort"]).await {
        Ok(()) => Ok(()),
        Err(()) => Err(match tx.error() {
            Some(e) => StoreError::from_js(&e, what),
            None => StoreError::Db(format!("{what} was aborted")),
        }),
    }
}

/// The IndexedDB factory of this global scope: a window or a worker.
fn factory() -> Result<IdbFactory, StoreError> {
    let global = js_sys::global();
    let idb = Reflect::get(&global, &"indexedDB".into())
        .map_err(|e| StoreError::Unavailable(super::error::js_error_parts(&e).1))?;
    idb.dyn_into::<IdbFactory>().map_err(|_| StoreError::Unavailable("indexedDB is missing from this context".into()))
}

/// An open database connection.
pub(crate) struct Db {
    pub db: IdbDatabase,
    /// Closes this connection when another tab upgrades the schema, instead of blocking it.
    _on_version_change: Listener,
}

impl Db {
    /// Open `name` at `version`, running `upgrade` inside the `upgradeneeded` event (the only
    /// place where object stores may be created).
    pub async fn open(name: &str, version: u32, upgrade: fn(&IdbDatabase) -> Result<(), JsValue>) -> Result<Db, StoreError> {
        let req: IdbOpenDbRequest = factory()?
            .open_with_u32(name, version)
            .map_err(|e| StoreError::from_js(&e, "opening the model database"))?;
        let upgrade_error = std::rc::Rc::new(std::cell::RefCell::new(None::<JsValue>));
        let on_upgrade = {
            let req = req.clone();
            let upgrade_error = upgrade_error.clone();
            Listener::new(move |_ev: Event| {
                let result = req.result().and_then(|db| db.dyn_into::<IdbDatabase>());
                if let Err(e) = result.and_then(|db| upgrade(&db)) {
                    *upgrade_error.borrow_mut() = Some(e);
                    // Aborting the versionchange transaction makes the open request fail.
                    if let Some(tx) = req.transaction() {
                        let _ = tx.abort();
                    }
                }
            })
        };
        req.add_event_listener_with_callback("upgradeneeded", on_upgrade.as_ref().unchecked_ref())
            .map_err(|e| StoreError::from_js(&e, "opening the model database"))?;
        let upgrade_listeners = Listeners { target: req.clone().into(), list: vec![("upgradeneeded", on_upgrade)] };
        let opened = request(&req, "opening the model database").await;
        drop(upgrade_listeners);
        if let Some(e) = upgrade_error.borrow_mut().take() {
            return Err(StoreError::from_js(&e, "creating the model database"));
        }
        let db: IdbDatabase = opened?
            .dyn_into()
            .map_err(|_| StoreError::Db("opening the model database returned no database".into()))?;
        let on_version_change = {
            let db = db.clone();
            Listener::new(move |_ev: Event| db.close())
        };
        db.set_onversionchange(Some(on_version_change.as_ref().unchecked_ref()));
        Ok(Db { db, _on_version_change: on_version_change })
    }

    pub fn transaction(&self, stores: &[&str], mode: IdbTransactionMode) -> Result<IdbTransaction, StoreError> {
        let names: Array = stores.iter().map(|s| JsValue::from_str(s)).collect();
        self.db
            .transaction_with_str_sequence_and_mode(&names, mode)
            .map_err(|e| StoreError::from_js(&e, "starting a storage transaction"))
    }

    pub fn close(&self) {
        self.db.set_onversionchange(None);
        self.db.close();
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        self.close();
    }
}

/// Delete a whole database (tests, and "forget everything" in the page).
pub(crate) async fn delete_database(name: &str) -> Result<(), StoreError> {
    let req = factory()?
        .delete_database(name)
        .map_err(|e| StoreError::from_js(&e, "deleting the model database"))?;
    request(&req, "deleting the model database").await.map(|_| ())
}
