//! The whole GPU engine (native wgpu; lavapipe in CI) against llama.cpp's references and
//! against the CPU reference on a synthetic model holding every tensor type.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::*;
use hearth::engine::{Backend, CpuBackend};
use hearth::gpu::backend::GpuBackend;
use hearth::gpu::{Gpu, GpuOptions, Tuning};
use hearth::model::reference::ReferenceModel;
use hearth::model::synthetic::{self, SyntheticSpec, TypeMix};
use hearth::sampling::{Sampler, SamplingParams};
use std::path::Path;

fn gpu(max_binding_bytes: Option<u64>) -> Gpu {
    gpu_tuned(max_binding_bytes, None)
}

fn gpu_tuned(max_binding_bytes: Option<u64>, tuning: Option<Tuning>) -> Gpu {
    Gpu::new_blocking(&GpuOptions { max_binding_bytes, tuning, ..Default::default() })
        .expect("a GPU adapter (install mesa-vulkan-drivers for lavapipe)")
}

fn load(path: &Path, gpu: &Gpu, context: u64) -> GpuBackend {
    GpuBackend::load_file(path, gpu, Some(context), |_, _, _| {}).expect("model loads on the GPU")
}

/// Logits of every position, one decode step at a time (the decode graph's output head).
fn logits_per_position(b: &mut GpuBackend, tokens: &[u32]) -> Vec<f32> {
    tokens.iter().flat_map(|&t| pollster::block_on(b.forward_last(&[t])).unwrap()).collect()
}

/// Greedy continuation: the prompt goes through the batched prefill graphs, then the sampler
/// runs on the GPU and only ids come back.
fn greedy(b: &mut GpuBackend, prompt: &[u32], n: usize) -> Vec<u32> {
    b.rewind(0);
    let mut sampler = Sampler::new(SamplingParams::greedy());
    let mut out = vec![pollster::block_on(b.next_token(prompt, &mut sampler)).unwrap()];
    while out.len() < n {
        let last = *out.last().unwrap();
        out.push(pollster::block_on(b.next_token(&[last], &mut sampler)).unwrap());
    }
    out
}

fn check_set(set: &str, max_binding_bytes: Option<u64>) {
    let gpu = gpu(max_binding_bytes);
    let mut b = load(&model_path(set), &gpu, 256);
    for (i, case) in ref_cases(set).iter().enumerate() {
        let label = format!("GPU {set} case {i}");
        b.rewind(0);
        let logits = logits_per_position(&mut b, &case.tokens);
        let worst = check_logits(&label, &logits, case);
        eprintln!("{label}: worst last-row logit error {worst:.2e}");
        assert_eq!(greedy(&mut b, &case.tokens, case.greedy_f32.len()), case.greedy_f32, "{label}: greedy");
    }
}

/// The tiny model with a 1 MiB binding limit: token_embd (18 MB of Q4_K, also the tied output
/// head) is split across 18 buffers, as Llama 3 8B's embedding and head are at 128 MiB.
#[test]
fn tiny_llama3_on_gpu_with_split_tensors() {
    check_set(TINY, Some(1 << 20));
}

#[test]
fn smollm2_on_gpu() {
    check_set(SMOLLM2, None);
}

/// Both kernel layouts (the adapter's own and the other one), so the GPU layout is checked on
/// lavapipe and the CPU layout on a GPU.
#[test]
fn every_tensor_type_matches_the_cpu_reference() {
    every_type_case(Tuning::Cpu);
    every_type_case(Tuning::Gpu);
}

fn every_type_case(tuning: Tuning) {
    let spec = SyntheticSpec {
        n_layers: 3,
        dim: 256,
        ffn_dim: 512,
        n_heads: 4,
        n_kv_heads: 2,
        vocab: 1000,
        context: 128,
        rope_base: 10000.0,
        tied_output: false,
        rope_freqs: true,
        types: TypeMix::Every,
        seed: 11,
    };
    let path = std::env::temp_dir().join(format!("hearth-every-type-{}-{tuning:?}.gguf", std::process::id()));
    synthetic::write(&spec, None, &mut std::fs::File::create(&path).unwrap()).unwrap();
    let (model, _) = ReferenceModel::load(&path).unwrap();
    let mut cpu = CpuBackend::new(model, 64);
    let gpu = gpu_tuned(Some(256 << 10), Some(tuning));
    let mut b = load(&path, &gpu, 64);
    std::fs::remove_file(&path).ok();

    // 21 tokens: prefill batches of 16 and 4 and one single step, then decode steps.
    let tokens: Vec<u32> = (0..21).map(|i| (i * 37 + 5) % 1000).collect();
    let want = cpu.forward_all(&tokens).unwrap();
    let vocab = spec.vocab;
    let got_last = pollster::block_on(b.forward_last(&tokens)).unwrap();
    let mut worst = 0f32;
    for (g, w) in got_last.iter().zip(&want[(tokens.len() - 1) * vocab..]) {
        worst = worst.max((g - w).abs() / w.abs().max(1.0));
    }
    assert!(worst < 1e-3, "GPU after batched prefill differs from the CPU by {worst}");
    // Every position through the decode graph.
    b.rewind(0);
    let got = logits_per_position(&mut b, &tokens);
    for (pos, (g, w)) in got.chunks(vocab).zip(want.chunks(vocab)).enumerate() {
        let err = g.iter().zip(w).map(|(a, b)| (a - b).abs() / b.abs().max(1.0)).fold(0f32, f32::max);
        assert!(err < 1e-3, "position {pos}: GPU differs from the CPU by {err}");
    }
    eprintln!("every-type synthetic model ({tuning:?} layout): worst relative logit error after prefill {worst:.2e}");
}
