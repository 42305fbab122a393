//! Full size: a Llama 3 8B-shaped synthetic GGUF (~4.9 GB of random valid Q4_K/Q6_K blocks in
//! the Q4_K_M arrangement, 128256-token vocabulary) is written to a temporary folder, loads
//! natively through the streaming loader, and generates from a text prompt, with the process's
//! peak host memory below 1.3x the file size (on lavapipe the "GPU" buffers are host memory
//! too, so this bounds everything the loader keeps besides the weights).
//!
//! Ignored (5 GB of disk, about a minute on lavapipe). Run it with
//! `cargo test --release --test full_size -- --ignored --nocapture`.
#![cfg(not(target_arch = "wasm32"))]

use hearth::engine;
use hearth::gpu::backend::GpuBackend;
use hearth::gpu::{Gpu, GpuOptions};
use hearth::model::loader::{peak_rss_bytes, read_header};
use hearth::model::synthetic::{self, SyntheticSpec};
use hearth::sampling::SamplingParams;
use hearth::tokenizer::Tokenizer;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

/// Removes the temporary folder however the test ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
#[ignore]
fn llama3_8b_shaped_model_loads_and_generates_in_bounded_memory() {
    let dir = TempDir(std::env::temp_dir().join(format!("hearth-full-size-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let path = dir.0.join("llama3-8b.gguf");

    // Llama 3's tokenizer, lent by the tiny fixture, so the prompt is text.
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny-llama3-q4km.gguf");
    let mut f = std::fs::File::open(fixture).unwrap();
    let len = f.metadata().unwrap().len();
    let (tokenizer_header, _) = read_header(&mut f, len).unwrap();
    let t0 = Instant::now();
    let mut out = std::io::BufWriter::with_capacity(8 << 20, std::fs::File::create(&path).unwrap());
    synthetic::write(&SyntheticSpec::llama3_8b(), Some(&tokenizer_header), &mut out).unwrap();
    out.flush().unwrap();
    drop(out);
    let file_bytes = std::fs::metadata(&path).unwrap().len();
    eprintln!("wrote {file_bytes} bytes in {:.1} s", t0.elapsed().as_secs_f64());
    assert!(file_bytes > 4_800_000_000 && file_bytes < 5_000_000_000, "{file_bytes} bytes");

    let gpu = Gpu::new_blocking(&GpuOptions::default()).expect("a GPU adapter (install mesa-vulkan-drivers for lavapipe)");
    let t0 = Instant::now();
    let mut backend = GpuBackend::load_file(&path, &gpu, Some(64), |_, _, _| {}).unwrap();
    let load_seconds = t0.elapsed().as_secs_f64();
    let head = backend.model.weights.get("output.weight").unwrap();
    // 431 MB of Q6_K: split by rows wherever a binding holds less (lavapipe: 128 MiB).
    assert!(head.parts.len() as u64 >= (head.rows * head.row_bytes).div_ceil(gpu.binding_limit()));

    let file = {
        let mut f = std::fs::File::open(&path).unwrap();
        read_header(&mut f, file_bytes).unwrap().0
    };
    let tok = Tokenizer::from_gguf(&file).unwrap();
    let prompt = tok.encode_prompt("The capital of France is").unwrap();
    let start = Instant::now();
    let clock = move || start.elapsed().as_secs_f64();
    let reply = pollster::block_on(engine::generate(&mut backend, &tok, &prompt, 0, &SamplingParams::greedy(), 2, &clock, &mut |_| true)).unwrap();
    assert_eq!(reply.tokens.len(), 2, "{:?}", reply.tokens);
    assert!(reply.tokens.iter().all(|&t| t < 128_256));
    let s = &reply.stats;
    eprintln!(
        "load {load_seconds:.1} s; {} prompt tokens at {:.2} tok/s; {} generated at {:.2} tok/s",
        s.prompt_tokens,
        s.prefill_tok_s(),
        s.generated_tokens,
        s.decode_tok_s()
    );

    match peak_rss_bytes() {
        Some(rss) => {
            let ratio = rss as f64 / file_bytes as f64;
            eprintln!("peak RSS {rss} bytes = {ratio:.2}x the file");
            assert!(ratio < 1.3, "peak host memory {rss} bytes is {ratio:.2}x the {file_bytes}-byte file");
        }
        None => eprintln!("peak RSS not reported on this OS; memory not checked"),
    }
}
