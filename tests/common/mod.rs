//! Fixture access and reference comparisons shared by the integration tests.
#![allow(dead_code)]

use serde::Deserialize;
use std::path::PathBuf;

/// Logits must match the llama.cpp F32 reference rows this closely (absolute).
pub const LOGIT_TOLERANCE: f32 = 2e-3;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

pub const TINY: &str = "tiny-llama3-q4km";
pub const SMOLLM2: &str = "smollm2-135m-instruct-q4_1";

/// The model file a fixture set refers to. SmolLM2 is not committed (98 MB); the README's test
/// command fetches it into models/.
pub fn model_path(set: &str) -> PathBuf {
    if set == TINY {
        return fixture("tiny-llama3-q4km.gguf");
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(p.exists(), "{} is missing: run scripts/fetch-model.sh (the README's test command does)", p.display());
    p
}

#[derive(Deserialize, Debug, Clone)]
pub struct RefCase {
    pub prompt: String,
    pub add_bos: bool,
    pub special: bool,
    pub tokens: Vec<u32>,
    pub logits_file: String,
    pub positions: usize,
    pub vocab: usize,
    /// Per position: the 10 largest (id, logit), largest first.
    pub top10: Vec<Vec<(u32, f32)>>,
    pub greedy_f32: Vec<u32>,
    pub greedy_f32_text: String,
}

#[derive(Deserialize)]
struct RefFile {
    cases: Vec<RefCase>,
}

pub fn ref_cases(set: &str) -> Vec<RefCase> {
    let text = std::fs::read_to_string(fixture(&format!("{set}.ref.json"))).expect("reference json");
    serde_json::from_str::<RefFile>(&text).expect("reference json parses").cases
}

pub fn read_f32(name: &str) -> Vec<f32> {
    let bytes = std::fs::read(fixture(name)).expect("reference logits");
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

/// Compare an engine's logits for every position (positions x vocab) with a reference case:
/// the last row within LOGIT_TOLERANCE of the reference row, and the top-10 ids equal at every
/// position except where two logits are within the tolerance of each other (a tie). Returns the
/// largest absolute error on the last row.
pub fn check_logits(label: &str, logits: &[f32], case: &RefCase) -> f32 {
    let vocab = case.vocab;
    assert_eq!(logits.len(), case.positions * vocab, "{label}: logits shape");
    let reference = read_f32(&case.logits_file);
    let last = &logits[(case.positions - 1) * vocab..];
    let (mut worst, mut worst_at) = (0f32, 0);
    for (i, (a, b)) in last.iter().zip(&reference).enumerate() {
        let e = (a - b).abs();
        if !(e <= worst) {
            worst = e;
            worst_at = i;
        }
    }
    assert!(worst <= LOGIT_TOLERANCE, "{label}: last-row logit {worst_at} off by {worst} (got {}, want {})", last[worst_at], reference[worst_at]);

    for (pos, top) in case.top10.iter().enumerate() {
        let row = &logits[pos * vocab..(pos + 1) * vocab];
        let mut ours: Vec<u32> = (0..vocab as u32).collect();
        ours.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]).then(a.cmp(&b)));
        for (rank, &(ref_id, ref_logit)) in top.iter().enumerate() {
            let got = ours[rank];
            if got != ref_id {
                // A swap is fine only between near-equal logits.
                let diff = (row[got as usize] - ref_logit).abs();
                assert!(
                    diff <= 2.0 * LOGIT_TOLERANCE,
                    "{label}: position {pos} rank {rank}: got id {got} ({}), reference id {ref_id} ({ref_logit})",
                    row[got as usize]
                );
            }
        }
    }
    worst
}
