//! The CPU reference forward pass against llama.cpp's F32 references.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::*;
use hearth::model::reference::{KvCache, ReferenceModel};
use hearth::sampling::argmax;

fn check_model(set: &str) {
    let (model, _) = ReferenceModel::load(&model_path(set)).expect("model loads");
    for (i, case) in ref_cases(set).iter().enumerate() {
        let label = format!("{set} case {i}");
        let mut cache = KvCache::new(&model.config);
        let logits = model.forward(&case.tokens, &mut cache);
        let worst = check_logits(&label, &logits, case);
        eprintln!("{label}: worst last-row logit error {worst:.2e}");

        // Greedy continuation, one token at a time through the cache.
        let vocab = model.config.vocab_size;
        let mut next = argmax(&logits[(case.positions - 1) * vocab..]);
        let mut generated = vec![next];
        while generated.len() < case.greedy_f32.len() {
            let logits = model.forward(&[next], &mut cache);
            next = argmax(&logits);
            generated.push(next);
        }
        assert_eq!(generated, case.greedy_f32, "{label}: greedy continuation");
    }
}

#[test]
fn tiny_llama3_matches_llama_cpp() {
    check_model(TINY);
}

#[test]
fn smollm2_matches_llama_cpp() {
    check_model(SMOLLM2);
}
