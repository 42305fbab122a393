//! Choosing the next token from logits: greedy, or temperature sampling with top-k, top-p,
//! min-p and a repetition penalty, reproducible from a seed on every platform.
//!
//! One algorithm, run here on the CPU and by `shaders/sample.wgsl` on the GPU. It follows
//! llama.cpp's default chain, so the same settings mean the same thing as there:
//! 1. Repetition penalty on the raw logits: each DISTINCT id among the last `repeat_last_n`
//!    tokens has its logit divided by the penalty if positive, multiplied if not.
//! 2. Greedy when `temperature <= 0` (or `top_k == 1`): the first index of the largest logit,
//!    NaN counting as -inf.
//! 3. Filters, judged at temperature 1 on the penalised logits `l_i` (`m` = the largest). Each
//!    keeps `{i : l_i >= threshold}`, so tokens tied at a boundary are all kept (llama.cpp
//!    breaks such ties arbitrarily; a threshold is what the GPU computes exactly), and the kept
//!    set is their intersection:
//!    - top-k (`0 < k < vocab`): the k-th largest logit;
//!    - top-p (`p < 1`): over the top-k survivors with probabilities `w_i = exp(l_i - m) / Z`,
//!      the largest `t` whose set `{l_i >= t}` holds mass `>= p` (`p <= 0` keeps only the top);
//!    - min-p (`> 0`): `m + ln(min_p)`, i.e. `w_i >= min_p * w_max` (llama.cpp's logit form;
//!      `min_p > 1` keeps nothing, which falls back to greedy).
//! 4. Temperature on the survivors only: probabilities `∝ exp((l_i - m) / temperature)`.
//! 5. A draw from those. The CPU uses [`Rng`] and walks the survivors from the most likely;
//!    the GPU hashes (seed, step) and walks them in id order. Same seed, different tokens; the
//!    same set of possible tokens with the same probabilities.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// 0 (or below) is greedy.
    pub temperature: f32,
    /// Keep the k most likely tokens; 0 keeps all.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches p; 1 keeps all.
    pub top_p: f32,
    /// Drop tokens less likely than min_p times the most likely one; 0 keeps all.
    pub min_p: f32,
    /// Divide positive (multiply negative) logits of recently seen tokens; 1 is off.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self { temperature: 0.8, top_k: 40, top_p: 0.95, min_p: 0.05, repeat_penalty: 1.0, repeat_last_n: 64, seed: 0 }
    }
}

impl SamplingParams {
    pub fn greedy() -> Self {
        Self { temperature: 0.0, ..Self::default() }
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }
}

/// xoshiro256** seeded by splitmix64: small, fast and identical on every target.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^ (x >> 31)
        };
        Self { s: [next(), next(), next(), next()] }
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 24 bits (exactly representable in f32).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Logits as the sampler compares them: NaN (a broken model, never a real score) counts as
/// the lowest possible value, as on the GPU.
fn score(v: f32) -> f32 {
    if v.is_nan() {
        -f32::MAX
    } else {
        v
    }
}

/// Index of the largest value; the lowest index wins ties (as llama.cpp's greedy sampler) and
/// NaN counts as -inf.
pub fn argmax(x: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if score(v) > score(x[best]) {
            best = i;
        }
    }
    best as u32
}

/// Sampling state for one conversation: the parameters, the random stream and the recent
/// tokens the repetition penalty looks at.
pub struct Sampler {
    pub params: SamplingParams,
    rng: Rng,
    recent: VecDeque<u32>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let rng = Rng::new(params.seed);
        Self { params, rng, recent: VecDeque::new() }
    }

    /// Record a token (prompt or generated) for the repetition penalty.
    pub fn accept(&mut self, token: u32) {
        if self.params.repeat_last_n == 0 {
            return;
        }
        if self.recent.len() == self.params.repeat_last_n {
            self.recent.pop_front();
        }
        self.recent.push_back(token);
    }

    pub fn recent(&self) -> impl Iterator<Item = u32> + '_ {
        self.recent.iter().copied()
    }

    /// Pick the next token from `logits` (modified in place by the penalty). The steps are
    /// the module's 1-5.
    pub fn sample(&mut self, logits: &mut [f32]) -> u32 {
        let p = &self.params;
        if p.repeat_penalty != 1.0 {
            let mut seen: Vec<u32> = self.recent.iter().copied().filter(|&t| (t as usize) < logits.len()).collect();
            seen.sort_unstable();
            seen.dedup();
            for t in seen {
                let l = &mut logits[t as usize];
                *l = if *l > 0.0 { *l / p.repeat_penalty } else { *l * p.repeat_penalty };
            }
        }
        if p.is_greedy() || p.top_k == 1 {
            return argmax(logits);
        }

        // Candidates sorted by logit, highest first (ties by id for reproducibility).
        let mut cand: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, score(l))).collect();
        let by_logit = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if p.top_k > 0 && p.top_k < cand.len() {
            cand.select_nth_unstable_by(p.top_k - 1, by_logit);
            let kth = cand[p.top_k - 1].1;
            cand.retain(|c| c.1 >= kth);
        }
        cand.sort_unstable_by(by_logit);
        let m = cand[0].1;

        // Thresholds at temperature 1 (the kept candidates are a prefix of `cand`).
        let mut threshold = f32::NEG_INFINITY;
        if p.top_p < 1.0 {
            let w: Vec<f64> = cand.iter().map(|c| ((c.1 - m) as f64).exp()).collect();
            let want = p.top_p as f64 * w.iter().sum::<f64>();
            let mut acc = 0.0;
            for (c, w) in cand.iter().zip(&w) {
                acc += w;
                if acc >= want {
                    threshold = c.1;
                    break;
                }
            }
        }
        if p.min_p > 0.0 {
            threshold = threshold.max(m + p.min_p.ln());
        }
        let keep = cand.partition_point(|c| c.1 >= threshold);
        if keep == 0 {
            return cand[0].0; // min_p > 1: greedy
        }
        cand.truncate(keep);

        let probs = softmax_of(&cand, p.temperature);
        let r = self.rng.next_f32();
        let mut acc = 0.0;
        for (i, &pr) in probs.iter().enumerate() {
            acc += pr;
            if r < acc {
                return cand[i].0;
            }
        }
        cand[cand.len() - 1].0
    }
}

/// Softmax of sorted candidates' logits at a temperature, as probabilities summing to 1.
fn softmax_of(cand: &[(u32, f32)], temperature: f32) -> Vec<f32> {
    let max = cand[0].1;
    let mut p: Vec<f32> = cand.iter().map(|&(_, l)| ((l - max) / temperature).exp()).collect();
    let sum: f32 = p.iter().sum();
    p.iter_mut().for_each(|v| *v /= sum);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32) -> SamplingParams {
        SamplingParams { temperature, top_k: 0, top_p: 1.0, min_p: 0.0, repeat_penalty: 1.0, repeat_last_n: 64, seed: 7 }
    }

    #[test]
    fn greedy_takes_first_maximum() {
        let mut s = Sampler::new(params(0.0));
        assert_eq!(s.sample(&mut [1.0, 3.0, 3.0, -1.0]), 1);
    }

    #[test]
    fn same_seed_same_tokens() {
        let logits: Vec<f32> = (0..50).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let run = || {
            let mut s = Sampler::new(params(1.0));
            (0..20).map(|_| s.sample(&mut logits.clone())).collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
        let distinct: std::collections::HashSet<_> = run().into_iter().collect();
        assert!(distinct.len() > 1, "temperature 1 should not be deterministic across draws");
    }

    #[test]
    fn top_k_one_is_greedy() {
        let mut s = Sampler::new(SamplingParams { top_k: 1, ..params(5.0) });
        for _ in 0..20 {
            assert_eq!(s.sample(&mut [0.5, 0.1, 2.0, 1.9]), 2);
        }
    }

    #[test]
    fn top_p_and_min_p_cut_the_tail() {
        // probabilities ~ [0.5, 0.25, 0.125, 0.125]
        let logits = [4f32.ln(), 2f32.ln(), 0.0, 0.0];
        let mut s = Sampler::new(SamplingParams { top_p: 0.7, ..params(1.0) });
        for _ in 0..200 {
            assert!(s.sample(&mut logits.clone()) < 2);
        }
        let mut s = Sampler::new(SamplingParams { min_p: 0.3, ..params(1.0) });
        for _ in 0..200 {
            assert!(s.sample(&mut logits.clone()) < 2);
        }
    }

    fn support(params: SamplingParams, logits: &[f32], draws: usize) -> std::collections::BTreeSet<u32> {
        let mut s = Sampler::new(params);
        (0..draws).map(|_| s.sample(&mut logits.to_vec())).collect()
    }

    #[test]
    fn filters_are_judged_at_temperature_one() {
        // probabilities at temperature 1: 0.4, 0.24, 0.16, 0.2 spread over 20 more tokens.
        let mut logits = vec![0.01f32.ln(); 23];
        logits[0] = 0.4f32.ln();
        logits[1] = 0.24f32.ln();
        logits[2] = 0.16f32.ln();
        // top-p 0.75 needs the first three at temperature 1 (at 0.5 the first two would do).
        let sharp = SamplingParams { top_p: 0.75, ..params(0.5) };
        assert_eq!(support(sharp, &logits, 400), [0, 1, 2].into());
        // min-p 0.2 keeps w >= 0.08 at temperature 1 (at 3 the tail would pass too).
        let flat = SamplingParams { min_p: 0.2, ..params(3.0) };
        assert_eq!(support(flat, &logits, 400), [0, 1, 2].into());
    }

    #[test]
    fn ties_at_a_boundary_are_all_kept() {
        let logits = [3.0, 2.0, 2.0, 1.0, 2.0f32.ln()];
        assert_eq!(support(SamplingParams { top_k: 2, ..params(1.0) }, &logits, 400), [0, 1, 2].into());
        // Cumulative probabilities 0.51, 0.69, 0.88, ...: top-p 0.6 is reached at id 1, inside
        // the tie {1, 2}, so both stay.
        assert_eq!(support(SamplingParams { top_p: 0.6, ..params(1.0) }, &logits, 400), [0, 1, 2].into());
    }

    #[test]
    fn repeat_penalty_moves_greedy_choice() {
        let mut s = Sampler::new(SamplingParams { repeat_penalty: 2.0, ..params(0.0) });
        s.accept(0);
        assert_eq!(s.sample(&mut [3.0, 2.0, -1.0]), 1);
    }

    #[test]
    fn draws_follow_the_distribution() {
        let logits = [0f32, 3f32.ln()]; // 25% / 75%
        let mut s = Sampler::new(params(1.0));
        let ones = (0..4000).filter(|_| s.sample(&mut logits.clone()) == 1).count();
        assert!((2800..3200).contains(&ones), "{ones}");
    }
}
