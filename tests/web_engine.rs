//! The engine in a real browser (headless Chromium's WebGPU on SwiftShader): the tiny Llama 3
//! fixture imported into IndexedDB, loaded shard by shard into GPU buffers, and run greedily.
//! The tokens must equal llama.cpp's F32 reference, which the native engine reproduces too.
#![cfg(target_arch = "wasm32")]

use hearth::gpu::{Gpu, GpuOptions};
use hearth::engine::Backend;
use hearth::sampling::{Sampler, SamplingParams};
use hearth::web::engine::{load_from_store, wasm_memory_bytes};
use hearth::web::Store;
use js_sys::{Function, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;
use web_sys::Blob;

wasm_bindgen_test_configure!(run_in_browser);

/// Served by the test runner, which serves the crate root.
const FIXTURE_URL: &str = "/tests/fixtures/tiny-llama3-q4km.gguf";
const REFERENCE: &str = include_str!("fixtures/tiny-llama3-q4km.ref.json");

async fn fetch_blob(url: &str) -> Blob {
    let fetch: Function = Reflect::get(&js_sys::global(), &"fetch".into()).unwrap().dyn_into().unwrap();
    let p: js_sys::Promise = fetch.call1(&JsValue::NULL, &url.into()).unwrap().dyn_into().unwrap();
    let resp: web_sys::Response = JsFuture::from(p).await.unwrap().dyn_into().unwrap();
    assert_eq!(resp.status(), 200, "the runner serves the crate root");
    JsFuture::from(resp.blob().unwrap()).await.unwrap().dyn_into().unwrap()
}

#[wasm_bindgen_test]
async fn tiny_llama3_generates_the_reference_tokens_on_webgpu() {
    let reference: serde_json::Value = serde_json::from_str(REFERENCE).unwrap();
    let case = &reference["cases"][0];
    let prompt: Vec<u32> = serde_json::from_value(case["tokens"].clone()).unwrap();
    let want: Vec<u32> = serde_json::from_value(case["greedy_f32"].clone()).unwrap();

    let name = format!("hearth-engine-test-{}", js_sys::Math::random());
    let store = Store::open_named(&name).await.unwrap();
    let file = fetch_blob(FIXTURE_URL).await;
    // 4 MiB shards: the 27 MB model spans 7, and tensors straddle shard boundaries.
    let shard = 4 << 20;
    store.import_blob(&file, "tiny", "tiny-llama3-q4km.gguf", shard, &mut |_| {}, None).await.unwrap();

    let gpu = Gpu::new(&GpuOptions::default()).await.expect("WebGPU adapter (Chromium needs --enable-unsafe-webgpu)");
    let memory_before = wasm_memory_bytes();
    let mut phases = Vec::new();
    let mut loaded = load_from_store(&store, &gpu, "tiny", Some(64), &mut |phase, bytes, total| phases.push((phase, bytes, total)))
        .await
        .unwrap();
    let memory_after = wasm_memory_bytes();
    console_log!(
        "tiny-llama3 (27 MB) loaded in {:.2} s; wasm memory {:.1} MB before, {:.1} MB after load",
        loaded.load_seconds,
        memory_before as f64 / 1e6,
        memory_after as f64 / 1e6
    );
    assert_eq!(phases.last().map(|p| p.1), Some(file.size() as u64), "progress reaches the file size");

    let mut sampler = Sampler::new(SamplingParams::greedy());
    let b = &mut loaded.backend;
    let mut got = vec![b.next_token(&prompt, &mut sampler).await.unwrap()];
    while got.len() < want.len() {
        let last = *got.last().unwrap();
        got.push(b.next_token(&[last], &mut sampler).await.unwrap());
    }
    assert_eq!(got, want, "greedy tokens on WebGPU");

    // The same model answers through the chat path (template + tokenizer from the GGUF).
    let messages = vec![hearth::chat::Message::new("user", "Hi there! How are you?")];
    let mut sink = |_: &str| true;
    let reply = loaded
        .session
        .respond(&mut loaded.backend, &loaded.tokenizer, &loaded.template, &messages, &SamplingParams::greedy(), 4, &|| 0.0, &mut sink)
        .await
        .unwrap();
    let case1: Vec<u32> = serde_json::from_value(reference["cases"][1]["greedy_f32"].clone()).unwrap();
    assert_eq!(reply.tokens, case1[..4], "chat reply tokens");

    drop(loaded);
    store.close();
    drop(store);
    Store::delete_database(&name).await.unwrap();
}
