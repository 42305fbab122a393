//! The IndexedDB model store and importer, in a real browser:
//! `wasm-pack test --headless --chrome` (see web/TESTING.md).
//!
//! Every test builds its GGUF in memory with `GgufWriter` (a tiny but complete Llama: F32
//! tensors, 64-wide) and uses its own database, deleted at the end. Shards are 4 KiB so a
//! ~330 KB model spans ~80 shards whose boundaries cut through tensors. URL imports need an
//! HTTP server, which a wasm test cannot start: they share the importer with the Blob path
//! tested here and are covered by the browser end-to-end tests.
#![cfg(target_arch = "wasm32")]

use hearth::gguf::{parse_complete, Array as GArray, GgufWriter, Value};
use hearth::quant::GgmlType;
use hearth::web::{ModelStore, Progress, Store, StoreError};
use js_sys::{Array, Function, Object, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;
use web_sys::{AbortController, Blob, DomException};

wasm_bindgen_test_configure!(run_in_browser);

const SHARD: u32 = 4096;

/// A tiny Llama that `LlamaConfig::from_gguf` accepts. `extra_tokens` adds a token list to the
/// metadata so the header can be made longer than one shard.
fn tiny_llama(arch: &str, extra_tokens: usize, seed: u32) -> Vec<u8> {
    let (dim, ffn, layers, vocab, heads, kv_heads) = (64u64, 128u64, 2u32, 64u64, 4u32, 2u32);
    let kv = dim / heads as u64 * kv_heads as u64;
    let mut w = GgufWriter::new();
    w.meta("general.architecture", Value::String(arch.into()));
    w.meta("general.name", Value::String("tiny test llama".into()));
    w.meta("llama.block_count", Value::U32(layers));
    w.meta("llama.embedding_length", Value::U32(dim as u32));
    w.meta("llama.feed_forward_length", Value::U32(ffn as u32));
    w.meta("llama.attention.head_count", Value::U32(heads));
    w.meta("llama.attention.head_count_kv", Value::U32(kv_heads));
    w.meta("llama.context_length", Value::U32(128));
    w.meta("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5));
    w.meta("llama.rope.freq_base", Value::F32(10000.0));
    if extra_tokens > 0 {
        let tokens = (0..extra_tokens).map(|i| format!("token_{i:06}")).collect();
        w.meta("tokenizer.ggml.tokens", Value::Array(GArray::String(tokens)));
    }
    let mut n = seed;
    let mut f32s = |elems: u64| -> Vec<u8> {
        // Distinct bytes everywhere, so a shard stored at the wrong place shows up.
        (0..elems)
            .flat_map(|_| {
                n = n.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((n >> 8) as f32 / 16_777_216.0 - 0.5).to_le_bytes()
            })
            .collect()
    };
    let mut t = |w: &mut GgufWriter, name: &str, dims: &[u64]| {
        let data = f32s(dims.iter().product());
        w.tensor(name, dims, GgmlType::F32, data);
    };
    t(&mut w, "token_embd.weight", &[dim, vocab]);
    for l in 0..layers {
        t(&mut w, &format!("blk.{l}.attn_norm.weight"), &[dim]);
        t(&mut w, &format!("blk.{l}.attn_q.weight"), &[dim, dim]);
        t(&mut w, &format!("blk.{l}.attn_k.weight"), &[dim, kv]);
        t(&mut w, &format!("blk.{l}.attn_v.weight"), &[dim, kv]);
        t(&mut w, &format!("blk.{l}.attn_output.weight"), &[dim, dim]);
        t(&mut w, &format!("blk.{l}.ffn_norm.weight"), &[dim]);
        t(&mut w, &format!("blk.{l}.ffn_gate.weight"), &[dim, ffn]);
        t(&mut w, &format!("blk.{l}.ffn_up.weight"), &[dim, ffn]);
        t(&mut w, &format!("blk.{l}.ffn_down.weight"), &[ffn, dim]);
    }
    t(&mut w, "output_norm.weight", &[dim]);
    t(&mut w, "output.weight", &[dim, vocab]);
    w.to_bytes()
}

fn blob(bytes: &[u8]) -> Blob {
    let parts = Array::of1(&Uint8Array::from(bytes));
    Blob::new_with_u8_array_sequence(&parts).expect("a Blob from bytes")
}

/// A fresh database per test, so tests never see each other's models.
async fn fresh_store(test: &str) -> (Store, String) {
    let name = format!("hearth-test-{test}-{}", js_sys::Math::random());
    (Store::open_named(&name).await.expect("open store"), name)
}

async fn drop_store(store: Store, name: &str) {
    store.close();
    drop(store);
    Store::delete_database(name).await.expect("delete test database");
}

/// All stored shards of `id`, concatenated, checking each one's length.
async fn stored_bytes(store: &Store, id: &str) -> Vec<u8> {
    let rec = store.model(id).await.unwrap().expect("record");
    let mut out = Vec::new();
    let mut buf = Vec::new();
    for i in 0..rec.shards_stored {
        store.read_shard_into(id, i, &mut buf).await.expect("shard");
        assert_eq!(buf.len() as u32, rec.shard_len(i), "shard {i} length");
        out.extend_from_slice(&buf);
    }
    out
}

async fn import(store: &Store, bytes: &[u8], id: &str, events: &mut Vec<Progress>, abort: Option<&AbortController>, stop_after: u32) -> Result<hearth::web::ModelRecord, StoreError> {
    let mut on_progress = |p: &Progress| {
        events.push(p.clone());
        if let Some(ctl) = abort {
            if p.shards_stored == stop_after {
                ctl.abort();
            }
        }
    };
    let signal = abort.map(|c| c.signal());
    store.import_blob(&blob(bytes), id, "tiny.gguf", SHARD, &mut on_progress, signal.as_ref()).await
}

#[wasm_bindgen_test]
async fn blob_import_with_shards_cutting_through_tensors() {
    let bytes = tiny_llama("llama", 0, 1);
    let file = parse_complete(&bytes).unwrap();
    let straddling = file.tensors.iter().filter(|t| t.offset / SHARD as u64 != (t.end() - 1) / SHARD as u64).count();
    assert!(straddling > 5, "the test needs tensors that straddle shard boundaries");
    assert!(!(bytes.len() as u64).is_multiple_of(SHARD as u64), "and a short last shard");

    let (store, db) = fresh_store("roundtrip").await;
    let mut events = Vec::new();
    let rec = import(&store, &bytes, "tiny", &mut events, None, 0).await.expect("import");
    let count = bytes.len().div_ceil(SHARD as usize) as u32;
    assert!(rec.complete);
    assert_eq!((rec.total_size, rec.shard_size, rec.shards_stored, rec.shard_count()), (bytes.len() as u64, SHARD, count, count));
    let summary = rec.summary.clone().expect("validated");
    assert_eq!((summary.architecture.as_str(), summary.n_layers, summary.dim, summary.n_kv_heads), ("llama", 2, 64, 2));
    assert_eq!(summary.tensor_types, vec!["F32".to_string()]);
    assert_eq!(summary.data_offset, file.data_offset);

    // Progress: once at the start, then once per shard, ending at the total.
    assert_eq!(events.len() as u32, count + 1);
    assert_eq!(events[0].stored_bytes, 0);
    assert!(events.windows(2).all(|w| w[1].shards_stored == w[0].shards_stored + 1));
    assert_eq!(events.last().map(|p| p.stored_bytes), Some(bytes.len() as u64));

    assert!(stored_bytes(&store, "tiny").await == bytes, "stored bytes differ from the file");
    assert_eq!(store.model("tiny").await.unwrap().as_ref(), Some(&rec));
    drop_store(store, &db).await;
}

#[wasm_bindgen_test]
async fn interrupted_import_resumes_from_the_first_missing_shard() {
    let bytes = tiny_llama("llama", 0, 2);
    let (store, db) = fresh_store("resume").await;
    let ctl = AbortController::new().unwrap();
    let mut events = Vec::new();
    let err = import(&store, &bytes, "m", &mut events, Some(&ctl), 10).await.unwrap_err();
    assert!(matches!(&err, StoreError::Aborted { stored, .. } if *stored == 10 * SHARD as u64), "{err}");
    assert!(err.to_string().contains("import it again to resume"), "{err}");
    let partial = store.model("m").await.unwrap().expect("partial record kept");
    assert_eq!((partial.shards_stored, partial.complete), (10, false));
    assert!(partial.summary.is_some(), "the header was inside the first shard");
    let listed = store.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(!listed[0].complete, "a partial import is never listed as ready");
    let err = store.ready_model("m").await.unwrap_err();
    assert!(matches!(err, StoreError::Incomplete { stored, .. } if stored == 10 * SHARD as u64), "{err}");

    // Resume from a source whose first ten shards are zeros: if the importer re-read them, the
    // stored model would differ from the original.
    let mut spliced = bytes.clone();
    spliced[..10 * SHARD as usize].fill(0);
    let mut events = Vec::new();
    let rec = import(&store, &spliced, "m", &mut events, None, 0).await.expect("resume");
    assert_eq!(events[0].shards_stored, 10, "resumed at the first missing shard, not at 0");
    assert!(rec.complete);
    assert_eq!(store.ready_model("m").await.as_ref(), Ok(&rec));
    assert!(stored_bytes(&store, "m").await == bytes, "resumed model differs from the file");
    drop_store(store, &db).await;
}

#[wasm_bindgen_test]
async fn header_longer_than_a_shard_is_validated_once_complete_even_across_a_resume() {
    let bytes = tiny_llama("llama", 1500, 3);
    let data_offset = parse_complete(&bytes).unwrap().data_offset;
    assert!(data_offset > 4 * SHARD as u64, "header must span several shards ({data_offset} bytes)");
    let (store, db) = fresh_store("longheader").await;
    let ctl = AbortController::new().unwrap();
    let mut events = Vec::new();
    import(&store, &bytes, "h", &mut events, Some(&ctl), 2).await.unwrap_err();
    let partial = store.model("h").await.unwrap().expect("partial");
    assert_eq!(partial.shards_stored, 2);
    assert!(partial.summary.is_none(), "two shards do not hold the header yet");

    let mut events = Vec::new();
    let rec = import(&store, &bytes, "h", &mut events, None, 0).await.expect("resume");
    assert_eq!(events[0].shards_stored, 2);
    assert_eq!(rec.summary.map(|s| s.data_offset), Some(data_offset));
    assert!(stored_bytes(&store, "h").await == bytes);
    drop_store(store, &db).await;
}

#[wasm_bindgen_test]
async fn a_different_file_under_an_unfinished_id_restarts_cleanly() {
    let first = tiny_llama("llama", 0, 4);
    let other = tiny_llama("llama", 40, 5); // same name "tiny.gguf", different size
    let (store, db) = fresh_store("restart").await;
    let ctl = AbortController::new().unwrap();
    import(&store, &first, "r", &mut Vec::new(), Some(&ctl), 5).await.unwrap_err();
    let mut events = Vec::new();
    import(&store, &other, "r", &mut events, None, 0).await.expect("restart");
    assert_eq!(events[0].shards_stored, 0, "a changed file is never spliced onto the old one");
    assert!(stored_bytes(&store, "r").await == other);
    drop_store(store, &db).await;
}

#[wasm_bindgen_test]
async fn list_delete_and_repeat_imports() {
    let (a, b) = (tiny_llama("llama", 0, 6), tiny_llama("llama", 10, 7));
    let (store, db) = fresh_store("list").await;
    import(&store, &a, "a", &mut Vec::new(), None, 0).await.expect("import a");
    import(&store, &b, "b", &mut Vec::new(), None, 0).await.expect("import b");
    let list = store.list().await.unwrap();
    let sizes: Vec<_> = list.iter().map(|r| (r.id.as_str(), r.total_size, r.stored_bytes(), r.complete)).collect();
    assert_eq!(sizes, vec![("a", a.len() as u64, a.len() as u64, true), ("b", b.len() as u64, b.len() as u64, true)]);

    // Importing a complete model again is a no-op; another source under its id is refused.
    let mut events = Vec::new();
    import(&store, &a, "a", &mut events, None, 0).await.expect("repeat import");
    assert!(events.is_empty(), "nothing re-imported");
    let mut none = |_: &Progress| {};
    let err = store.import_blob(&blob(&a), "a", "other.gguf", SHARD, &mut none, None).await.unwrap_err();
    assert!(matches!(err, StoreError::Exists(_)), "{err}");

    assert!(store.delete("a").await.unwrap());
    assert!(!store.delete("a").await.unwrap(), "second delete finds nothing");
    assert_eq!(store.list().await.unwrap().iter().map(|r| r.id.clone()).collect::<Vec<_>>(), vec!["b".to_string()]);
    assert!(store.model("a").await.unwrap().is_none());
    assert!(matches!(store.read_shard("a", 0).await, Err(StoreError::BadShard { .. })), "shards deleted too");
    assert!(stored_bytes(&store, "b").await == b, "the other model is untouched");
    drop_store(store, &db).await;
}

#[wasm_bindgen_test]
async fn a_non_gguf_is_refused_at_the_first_shard() {
    let junk: Vec<u8> = (0..3 * SHARD).map(|i| (i % 251) as u8).collect();
    let (store, db) = fresh_store("junk").await;
    let mut events = Vec::new();
    let err = import(&store, &junk, "junk", &mut events, None, 0).await.unwrap_err();
    assert!(matches!(&err, StoreError::Refused(m) if m.contains("not a GGUF file")), "{err}");
    assert_eq!(events.len(), 1, "refused before any shard was stored");
    assert!(store.list().await.unwrap().is_empty(), "nothing listed");
    assert!(store.read_shard("junk", 0).await.is_err(), "nothing stored");
    drop_store(store, &db).await;
}

#[wasm_bindgen_test]
async fn an_unsupported_architecture_is_refused_with_the_reason() {
    let gpt2 = tiny_llama("gpt2", 0, 8);
    let (store, db) = fresh_store("gpt2").await;
    let mut events = Vec::new();
    let err = import(&store, &gpt2, "g", &mut events, None, 0).await.unwrap_err();
    assert!(matches!(&err, StoreError::Refused(m) if m.contains("\"gpt2\"") && m.contains("Llama")), "{err}");
    assert_eq!(events.len(), 1, "refused at the first shard");
    assert!(store.list().await.unwrap().is_empty());
    assert!(store.read_shard("g", 0).await.is_err());

    // Refused after a resume too, when the header only completes in a later shard: the shards
    // stored before the refusal are deleted.
    let long = tiny_llama("gpt2", 1500, 9);
    let ctl = AbortController::new().unwrap();
    import(&store, &long, "g2", &mut Vec::new(), Some(&ctl), 1).await.unwrap_err();
    assert_eq!(store.list().await.unwrap().len(), 1, "undecided partial import kept");
    let err = import(&store, &long, "g2", &mut Vec::new(), None, 0).await.unwrap_err();
    assert!(matches!(&err, StoreError::Refused(m) if m.contains("gpt2")), "{err}");
    assert!(store.list().await.unwrap().is_empty(), "refused partial import removed");
    assert!(store.read_shard("g2", 0).await.is_err());
    drop_store(store, &db).await;
}

#[wasm_bindgen_test]
async fn quota_exceeded_keeps_the_partial_import_resumable() {
    // A store with an injected byte budget (a test hook): past it, the store raises a real
    // DOMException named QuotaExceededError through the same path as the browser's.
    let bytes = tiny_llama("llama", 0, 10);
    let name = format!("hearth-test-quota-{}", js_sys::Math::random());
    let budget = 20 * SHARD as u64;
    let store = Store::open_with_test_budget(&name, budget).await.unwrap();
    let err = import(&store, &bytes, "q", &mut Vec::new(), None, 0).await.unwrap_err();
    let msg = err.to_string();
    assert!(err.is_quota(), "{err}");
    assert!(msg.starts_with("storage is full: free ") && msg.contains(" MB or delete a model; the partial import can be resumed"), "{msg}");
    let needed_mb = (bytes.len() as u64 - budget).div_ceil(1_000_000);
    assert!(msg.contains(&format!("free {needed_mb} MB")), "{msg}");
    let partial = store.model("q").await.unwrap().expect("partial kept");
    assert_eq!((partial.shards_stored, partial.complete), (20, false));
    assert!(!store.list().await.unwrap()[0].complete, "not ready");
    store.close();
    drop(store);

    // With room again (here: no budget), importing again resumes where it stopped.
    let store = Store::open_named(&name).await.unwrap();
    let mut events = Vec::new();
    let rec = import(&store, &bytes, "q", &mut events, None, 0).await.expect("resume after quota");
    assert_eq!(events[0].shards_stored, 20);
    assert!(rec.complete);
    assert!(stored_bytes(&store, "q").await == bytes);
    drop_store(store, &name).await;
}

#[wasm_bindgen_test]
fn a_real_quota_exceeded_domexception_maps_to_the_quota_error() {
    let e = DomException::new_with_message_and_name("The quota has been exceeded.", "QuotaExceededError").unwrap();
    let err = StoreError::from_js(&e, "storing a shard");
    assert!(err.is_quota(), "{err}");
    assert!(err.to_string().contains("the partial import can be resumed"));
    let js: JsValue = err.into();
    let js: js_sys::Error = js.dyn_into().expect("a JS Error at the boundary");
    assert_eq!(String::from(js.name()), "QuotaExceededError");

    let other = DomException::new_with_message_and_name("bad key", "DataError").unwrap();
    assert!(matches!(StoreError::from_js(&other, "x"), StoreError::Db(m) if m.contains("DataError")));
}

#[wasm_bindgen_test]
async fn the_js_api_imports_lists_and_rejects_with_named_errors() {
    let bytes = tiny_llama("llama", 0, 11);
    let name = format!("hearth-test-js-{}", js_sys::Math::random());
    let store = ModelStore::open(Some(name.clone())).await.map_err(|_| ()).expect("open");
    let options = Object::new();
    let calls = Function::new_with_args("p", "globalThis.__hearthProgress = p; globalThis.__hearthCalls = (globalThis.__hearthCalls || 0) + 1;");
    Reflect::set(&options, &"shardSize".into(), &SHARD.into()).unwrap();
    Reflect::set(&options, &"onProgress".into(), &calls).unwrap();
    let rec = JsFuture::from(store.import_file(blob(&bytes), "js".into(), Some(options))).await.map_err(|_| ()).expect("importFile");
    let get = |o: &JsValue, k: &str| Reflect::get(o, &k.into()).unwrap();
    assert_eq!(get(&rec, "ready").as_bool(), Some(true));
    assert_eq!(get(&rec, "totalSize").as_f64(), Some(bytes.len() as f64));
    let global = js_sys::global();
    let count = bytes.len().div_ceil(SHARD as usize) as f64;
    assert_eq!(get(&global, "__hearthCalls").as_f64(), Some(count + 1.0));
    assert_eq!(get(&get(&global, "__hearthProgress"), "storedBytes").as_f64(), Some(bytes.len() as f64));

    let list: Array = JsFuture::from(store.list()).await.map_err(|_| ()).unwrap().dyn_into().unwrap();
    assert_eq!(list.length(), 1);
    assert_eq!(get(&list.get(0), "id").as_string().as_deref(), Some("js"));
    assert_eq!(get(&get(&list.get(0), "summary"), "architecture").as_string().as_deref(), Some("llama"));
    let shard: Uint8Array = JsFuture::from(store.read_shard("js".into(), 0)).await.map_err(|_| ()).unwrap().dyn_into().unwrap();
    assert_eq!(shard.to_vec(), bytes[..SHARD as usize]);

    let junk = blob(&[7u8; 5000]);
    let err = JsFuture::from(store.import_file(junk, "junk".into(), None)).await.expect_err("junk refused");
    let err: js_sys::Error = err.dyn_into().expect("an Error");
    assert_eq!(String::from(err.name()), "UnsupportedModelError");
    assert!(String::from(err.message()).contains("not a GGUF"));

    let bad = Object::new();
    Reflect::set(&bad, &"shardSize".into(), &"big".into()).unwrap();
    let err = JsFuture::from(store.import_file(blob(&bytes), "x".into(), Some(bad))).await.expect_err("bad option");
    assert_eq!(String::from(err.dyn_into::<js_sys::Error>().unwrap().name()), "TypeError");

    assert_eq!(JsFuture::from(store.delete("js".into())).await.map_err(|_| ()).unwrap().as_bool(), Some(true));
    let est = ModelStore::estimate().await.map_err(|_| ()).expect("estimate");
    assert!(get(&est, "quota").as_f64().unwrap_or(0.0) > 0.0);
    store.close();
    drop(store);
    ModelStore::delete_database(name).await.map_err(|_| ()).unwrap();
}

// ---------------------------------------------------------------------------------------------
// URL import. A wasm test cannot start an HTTP server, and the runner's own server streams large
// files without Content-Length, so these fetch `blob:` URLs: a real `fetch` with a streamed body,
// Content-Length, and (in Chromium) `Range` answered with 206 and Content-Range. The model is
// the real 27 MB tiny Llama 3 fixture (Q4_K, a full Llama 3 tokenizer in its header), read
// from the runner's server, which serves the crate root.

const FIXTURE_URL: &str = "/tests/fixtures/tiny-llama3-q4km.gguf";

async fn fetch_response(url: &str, range: Option<&str>) -> web_sys::Response {
    let init = web_sys::RequestInit::new();
    if let Some(r) = range {
        let headers = web_sys::Headers::new().unwrap();
        headers.set("Range", r).unwrap();
        init.set_headers(&headers);
    }
    let fetch: Function = Reflect::get(&js_sys::global(), &"fetch".into()).unwrap().dyn_into().unwrap();
    let p: js_sys::Promise = fetch.call2(&JsValue::NULL, &url.into(), &init).unwrap().dyn_into().unwrap();
    JsFuture::from(p).await.map_err(|_| ()).unwrap().dyn_into().unwrap()
}

async fn fixture_blob() -> Blob {
    let resp = fetch_response(FIXTURE_URL, None).await;
    assert_eq!(resp.status(), 200, "the runner serves the crate root");
    JsFuture::from(resp.blob().unwrap()).await.map_err(|_| ()).unwrap().dyn_into().unwrap()
}

fn object_url(blob: &Blob) -> String {
    let url = Reflect::get(&js_sys::global(), &"URL".into()).unwrap();
    let create: Function = Reflect::get(&url, &"createObjectURL".into()).unwrap().dyn_into().unwrap();
    create.call1(&url, blob).unwrap().as_string().unwrap()
}

async fn assert_stored_equals(store: &Store, id: &str, file: &Blob) {
    let rec = store.model(id).await.unwrap().expect("record");
    assert_eq!(rec.total_size, file.size() as u64);
    let all = Uint8Array::new(&JsFuture::from(file.array_buffer()).await.map_err(|_| ()).unwrap());
    for i in 0..rec.shard_count() {
        let start = i * rec.shard_size;
        let shard = store.read_shard(id, i).await.expect("shard");
        assert!(shard.to_vec() == all.subarray(start, start + rec.shard_len(i)).to_vec(), "shard {i} differs");
    }
}

#[wasm_bindgen_test]
async fn url_import_streams_a_real_llama3_file_and_resumes_with_range() {
    let file = fixture_blob().await;
    let url = object_url(&file);
    // What this browser does with Range on this URL decides whether a resume can continue
    // (206) or must restart cleanly (200); both paths are the importer's.
    let probe = fetch_response(&url, Some("bytes=4-7")).await;
    let range_status = probe.status();
    console_log!("Range on a blob: URL answered {range_status}");

    let (store, db) = fresh_store("url").await;
    let shard = 1 << 20;
    let ctl = AbortController::new().unwrap();
    let signal = ctl.signal();
    let mut on = |p: &Progress| {
        if p.shards_stored == 3 {
            ctl.abort();
        }
    };
    let err = store.import_url(&url, "url", shard, &mut on, Some(&signal)).await.unwrap_err();
    assert!(matches!(err, StoreError::Aborted { stored, .. } if stored == 3 << 20), "{err}");
    let partial = store.model("url").await.unwrap().expect("partial");
    assert_eq!((partial.shards_stored, partial.complete), (3, false));

    let mut events = Vec::new();
    let mut on = |p: &Progress| events.push(p.clone());
    let rec = store.import_url(&url, "url", shard, &mut on, None).await.expect("resume");
    let expected_start = if range_status == 206 { 3 } else { 0 };
    assert_eq!(events[0].shards_stored, expected_start, "Range answered {range_status}");
    assert!(rec.complete);
    let summary = rec.summary.clone().expect("validated");
    assert!(summary.tensor_types.iter().any(|t| t == "Q4_K"), "{:?}", summary.tensor_types);
    assert_eq!(summary.vocab_size, 128256, "a Llama 3 vocabulary");
    assert_stored_equals(&store, "url", &file).await;
    drop_store(store, &db).await;
}

#[wasm_bindgen_test]
async fn url_import_validates_a_header_spanning_many_shards() {
    // 64 KiB shards: the Llama 3 tokenizer makes the header span dozens of them.
    let file = fixture_blob().await;
    let (store, db) = fresh_store("urlheader").await;
    let mut none = |_: &Progress| {};
    let rec = store.import_url(&object_url(&file), "u", 64 << 10, &mut none, None).await.expect("import");
    let data_offset = rec.summary.as_ref().expect("validated").data_offset;
    assert!(data_offset > 10 * (64 << 10), "header of {data_offset} bytes");
    assert_stored_equals(&store, "u", &file).await;
    drop_store(store, &db).await;
}

#[wasm_bindgen_test]
async fn url_import_of_a_missing_file_says_so_and_stores_nothing() {
    let (store, db) = fresh_store("url404").await;
    let mut none = |_: &Progress| {};
    let err = store.import_url("/tests/fixtures/no-such-model.gguf", "x", SHARD, &mut none, None).await.unwrap_err();
    assert!(matches!(&err, StoreError::BadResponse(m) if m.contains("HTTP 404")), "{err}");
    assert!(store.list().await.unwrap().is_empty());
    drop_store(store, &db).await;
}

/// Not the store: checks that webdriver.json's Chromium flags give this test browser a WebGPU
/// adapter (SwiftShader), which the engine's browser tests rely on.
#[wasm_bindgen_test]
async fn the_test_browser_has_a_webgpu_adapter() {
    let navigator = Reflect::get(&js_sys::global(), &"navigator".into()).unwrap();
    let gpu = Reflect::get(&navigator, &"gpu".into()).unwrap();
    assert!(!gpu.is_undefined(), "navigator.gpu is missing: is --enable-unsafe-webgpu in webdriver.json?");
    let request: Function = Reflect::get(&gpu, &"requestAdapter".into()).unwrap().dyn_into().unwrap();
    let promise: js_sys::Promise = request.call0(&gpu).unwrap().dyn_into().unwrap();
    let adapter = JsFuture::from(promise).await.map_err(|_| ()).expect("requestAdapter");
    assert!(!adapter.is_null(), "requestAdapter() returned null: WebGPU is not enabled in the test browser");
}
