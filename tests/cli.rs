//! The `hearth` command line: its output contracts and its errors.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::*;
use std::process::Command;

fn hearth(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hearth")).args(args).output().expect("hearth runs");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn tiny() -> String {
    model_path(TINY).display().to_string()
}

#[test]
fn info_reports_hyper_parameters() {
    let (ok, out, err) = hearth(&["info", &tiny()]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["architecture"], "llama");
    assert_eq!(v["layers"], 2);
    assert_eq!(v["embedding_length"], 256);
    assert_eq!(v["feed_forward_length"], 512);
    assert_eq!(v["heads"], 4);
    assert_eq!(v["kv_heads"], 2);
    assert_eq!(v["vocab_size"], 128256);
    assert_eq!(v["rope_base"], 500000.0);
    assert_eq!(v["file_size"], std::fs::metadata(model_path(TINY)).unwrap().len());
    assert!(v["tensor_types"]["Q4_K"].as_u64().unwrap() > 0);
    assert!(v["tensor_types"]["F32"].as_u64().unwrap() > 0);
}

#[test]
fn tokenize_text_and_file() {
    let (ok, out, _) = hearth(&["tokenize", &tiny(), "Hello world"]);
    assert!(ok);
    assert_eq!(out.trim(), "[9906,1917]");
    let (_, out, _) = hearth(&["tokenize", &tiny(), "a<|eot_id|>b", "--bos"]);
    assert_eq!(out.trim(), "[128000,64,128009,65]");
    let input = std::env::temp_dir().join(format!("hearth-tok-{}.json", std::process::id()));
    std::fs::write(&input, r#"["Hello world", " Hello"]"#).unwrap();
    let (ok, out, err) = hearth(&["tokenize", &tiny(), "--input", input.to_str().unwrap()]);
    std::fs::remove_file(&input).ok();
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "[[9906,1917],[22691]]");
}

#[test]
fn logits_writes_every_position() {
    let case = &ref_cases(TINY)[0];
    let ids: Vec<String> = case.tokens.iter().map(|t| t.to_string()).collect();
    let out_file = std::env::temp_dir().join(format!("hearth-logits-{}.f32", std::process::id()));
    let (ok, out, err) = hearth(&["logits", &tiny(), "--tokens", &ids.join(","), "--out", out_file.to_str().unwrap()]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["positions"], case.positions);
    assert_eq!(v["vocab"], case.vocab);
    assert_eq!(v["argmax_last"], case.greedy_f32[0]);
    let bytes = std::fs::read(&out_file).unwrap();
    std::fs::remove_file(&out_file).ok();
    let logits: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    check_logits("cli logits", &logits, case);
}

#[test]
fn generate_answers_the_capital_of_france() {
    let model = model_path(SMOLLM2).display().to_string();
    let (ok, out, err) = hearth(&["generate", &model, "--prompt", "What is the capital of France?", "--chat", "--temperature", "0", "--json"]);
    assert!(ok, "{err}");
    let last = out.lines().last().unwrap();
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(v["text"], "The capital of France is Paris.");
    assert_eq!(v["tokens"], serde_json::json!([504, 3575, 282, 4649, 314, 7042, 30, 2]));
    assert!(out.starts_with("The capital of France is Paris."), "streamed text first: {out}");
}

#[test]
fn generate_from_tokens_is_greedy_reference() {
    let case = &ref_cases(TINY)[0];
    let ids: Vec<String> = case.tokens.iter().map(|t| t.to_string()).collect();
    let n = case.greedy_f32.len().to_string();
    let (ok, out, err) = hearth(&["generate", &tiny(), "--tokens", &ids.join(","), "--max-tokens", &n, "--temperature", "0", "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(v["tokens"], serde_json::json!(case.greedy_f32));
}

#[test]
fn errors_are_one_line_and_fail() {
    let missing = hearth(&["info", "/nonexistent/model.gguf"]);
    let not_gguf_path = std::env::temp_dir().join(format!("hearth-notgguf-{}.bin", std::process::id()));
    std::fs::write(&not_gguf_path, b"this is not a model file at all").unwrap();
    let not_gguf = hearth(&["generate", not_gguf_path.to_str().unwrap(), "--prompt", "hi"]);
    std::fs::remove_file(&not_gguf_path).ok();
    let bad_token = hearth(&["logits", &tiny(), "--tokens", "99999999", "--out", "/tmp/x.f32"]);
    for ((ok, _, err), what) in [(missing, "cannot open"), (not_gguf, "not a GGUF file"), (bad_token, "outside the vocabulary")] {
        assert!(!ok);
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.contains(what), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn synth_writes_a_model_that_generates_and_benches() {
    let path = std::env::temp_dir().join(format!("hearth-synth-{}.gguf", std::process::id()));
    let p = path.to_str().unwrap();
    let (ok, out, err) = hearth(&["synth", p, "--shape", "tiny", "--tokenizer-from", &tiny()]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["bytes"], std::fs::metadata(&path).unwrap().len());
    // The lent Llama 3 tokenizer makes text prompts work.
    let (ok, out, err) = hearth(&["generate", p, "--prompt", "Hello", "--max-tokens", "3", "--temperature", "0", "--json"]);
    assert!(ok, "{err}");
    let last: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(last["tokens"].as_array().unwrap().len(), 3);
    let (ok, out, err) = hearth(&["bench", p, "--device", "cpu", "--prompt-tokens", "6", "--gen-tokens", "2", "--json"]);
    assert!(ok, "{err}");
    let b: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert!(b["decode_tok_s"].as_f64().unwrap() > 0.0);
    if cfg!(target_os = "linux") {
        assert!(b["peak_rss_bytes"].as_u64().unwrap() > 0);
    }
    std::fs::remove_file(&path).ok();
    // A tokenizer must match the 8B shape's vocabulary; nothing is left behind on error.
    let (ok, _, err) = hearth(&["synth", p, "--shape", "llama3-8b", "--tokenizer-from", &model_path(SMOLLM2).display().to_string()]);
    assert!(!ok && err.contains("49152"), "{err}");
    assert!(!path.exists());
}
