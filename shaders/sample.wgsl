// sample.wgsl: choosing the next token on the GPU, in one workgroup of 256 threads.
//
// `argmax`: the index of the largest logit; ties go to the LOWEST index; NaN counts as -inf.
//
// `sample`: the algorithm hearth::sampling::Sampler runs on the CPU, which is llama.cpp's default
// chain (penalties → top-k → top-p → min-p → temperature → draw). The steps, in order:
//  1. Repetition penalty, in place on the raw logits: for each DISTINCT id among the last
//     min(pushed, window, last_n) tokens of the ring, logit = logit > 0 ? logit / penalty
//     : logit * penalty.
//  2. Greedy when temperature <= 0 or top_k == 1: the argmax above.
//  3. Filters, judged at temperature 1 on the penalised logits l_i (m = max l_i). Each keeps
//     {i : l_i >= threshold}, so tokens tied at a boundary are all kept; the kept set is the
//     intersection:
//     top-k (0 < k < vocab): threshold = the k-th largest l_i;
//     top-p (p < 1): among the top-k survivors, with w_i = exp(l_i - m) / Z (Z = their sum),
//       threshold = the largest t with sum(w_i : l_i >= t) >= p (p <= 0 keeps the top only);
//     min-p (> 0): threshold = m + ln(min_p), i.e. w_i >= min_p * w_max (min_p > 1 keeps
//       nothing, which falls back to greedy).
//     Thresholds are exact: radix select over order-preserving u32 keys of l_i, counting ids
//     (top-k) or masses w_i in 2^-31 fixed point (top-p), 8 bits per pass.
//  4. Temperature, on the survivors only: p_i = exp((l_i - m) / temperature) (unnormalised).
//  5. r = uniform01(seed, step.rand_step) (common.wgsl: PCG hash, 24 bits); walk the kept ids
//     in increasing id order accumulating p_i; pick the first id where the running sum
//     exceeds r * (sum of kept p_i). (If rounding runs past the end, the last kept id.)
//  6. out[0] = the id; the id is pushed into the recent-token ring.
// The CPU draws with its own generator (and walks by probability, not id), so the same seed
// picks different tokens on the two; the set of tokens that can be picked, and their
// probabilities, are the same.

struct Params {
    vocab: u32,
    top_k: u32,        // 0: off
    window: u32,       // capacity of the recent-token ring (0: no penalty, no ring)
    seed: u32,
    temperature: f32,  // <= 0: greedy
    top_p: f32,        // >= 1: off
    min_p: f32,        // <= 0: off
    rep_penalty: f32,  // 1: off
    last_n: u32,       // recent tokens the penalty looks at (at most `window`)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read_write> L: array<f32>;      // [vocab] logits (penalised in place)
@group(0) @binding(1) var<storage, read_write> RECENT: array<u32>; // [1 + window]: [0] = tokens pushed, then a ring
@group(0) @binding(2) var<storage, read_write> OUT: array<u32>;    // [1] chosen token
@group(0) @binding(3) var<uniform> P: Params;
@group(0) @binding(4) var<uniform> S: Step;

const WG: u32 = 256u;
const NONE: u32 = 0xFFFFFFFFu;
const MASS_ONE: f32 = 2147483648.0; // 2^31: fixed-point unit of the top-p masses

var<workgroup> red_v: array<f32, WG>;
var<workgroup> red_i: array<u32, WG>;
var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> sel_prefix: u32;
var<workgroup> sel_above: u32;
var<workgroup> pick_thread: u32;
var<workgroup> pick_base: f32;
var<workgroup> pick_target: f32;

fn logit(i: u32) -> f32 {
    let v = L[i];
    return select(v, -F32_MAX, v != v);
}

// The draw weight of a kept token (step 4): temperature applied after the filters.
fn tempered(i: u32, m: f32) -> f32 {
    return exp((logit(i) - m) / P.temperature);
}

// Index of the largest logit (lowest index on ties); its value is left in red_v[0].
fn argmax_reduce(lid: u32) -> u32 {
    var bv = -F32_MAX;
    var bi = NONE;
    for (var i = lid; i < P.vocab; i += WG) {
        let v = logit(i);
        if (bi == NONE || v > bv) {
            bv = v;
            bi = i;
        }
    }
    red_v[lid] = bv;
    red_i[lid] = bi;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            let ov = red_v[lid + s];
            let oi = red_i[lid + s];
            let mi = red_i[lid];
            if (oi != NONE && (mi == NONE || ov > red_v[lid] || (ov == red_v[lid] && oi < mi))) {
                red_v[lid] = ov;
                red_i[lid] = oi;
            }
        }
        workgroupBarrier();
    }
    return red_i[0];
}

fn block_sum(lid: u32, v: f32) -> f32 {
    red_v[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red_v[lid] += red_v[lid + s];
        }
        workgroupBarrier();
    }
    let r = red_v[0];
    workgroupBarrier();
    return r;
}

// The largest key t such that the weight of {i : key_lo <= key_i, t <= key_i} is >= want,
// where key_i = order_key(l_i) and the weight of i is 1, or (by_mass) its fixed-point mass.
// If even the whole set weighs less than want (rounding), the smallest key in it.
fn radix_select(lid: u32, want: u32, by_mass: bool, key_lo: u32, m: f32, mass_scale: f32) -> u32 {
    var prefix = 0u;
    var above = 0u; // weight of keys above the current prefix's range
    for (var r = 0u; r < 4u; r++) {
        let shift = 24u - 8u * r;
        var hi_mask = 0u;
        if (r > 0u) {
            hi_mask = 0xFFFFFFFFu << (32u - 8u * r);
        }
        atomicStore(&hist[lid], 0u);
        workgroupBarrier();
        for (var i = lid; i < P.vocab; i += WG) {
            let l = logit(i);
            let k = order_key(l);
            if (k >= key_lo && (k & hi_mask) == prefix) {
                var w = 1u;
                if (by_mass) {
                    w = u32(exp(l - m) * mass_scale);
                }
                atomicAdd(&hist[(k >> shift) & 255u], w);
            }
        }
        workgroupBarrier();
        if (lid == 0u) {
            var acc = above;
            var chosen = NONE;
            var lowest = 0u;
            var lowest_above = above;
            for (var b = 256u; b > 0u; b--) {
                let h = atomicLoad(&hist[b - 1u]);
                if (h == 0u) {
                    continue;
                }
                if (acc + h >= want) {
                    chosen = b - 1u;
                    break;
                }
                lowest = b - 1u;
                lowest_above = acc;
                acc += h;
            }
            if (chosen == NONE) {
                chosen = lowest;
                acc = lowest_above;
            }
            sel_prefix = prefix | (chosen << shift);
            sel_above = acc;
        }
        workgroupBarrier();
        prefix = sel_prefix;
        above = sel_above;
    }
    return prefix;
}

fn finish(token: u32) {
    OUT[0] = token;
    if (P.window > 0u) {
        let c = RECENT[0];
        RECENT[1u + c % P.window] = token;
        RECENT[0] = c + 1u;
    }
}

@compute @workgroup_size(256)
fn argmax(@builtin(local_invocation_index) lid: u32) {
    let best = argmax_reduce(lid);
    if (lid == 0u) {
        OUT[0] = select(best, 0u, best == NONE);
    }
}

@compute @workgroup_size(256)
fn sample(@builtin(local_invocation_index) lid: u32) {
    // 1. Repetition penalty over the distinct ids among the last n pushed tokens.
    if (P.rep_penalty != 1.0 && P.window > 0u) {
        let c = RECENT[0];
        let n = min(min(c, P.window), P.last_n);
        let first_slot = c - n; // token i sits at ring slot i % window
        for (var j = lid; j < n; j += WG) {
            let id = RECENT[1u + (first_slot + j) % P.window];
            var first = true;
            for (var k = 0u; k < j; k++) {
                if (RECENT[1u + (first_slot + k) % P.window] == id) {
                    first = false;
                    break;
                }
            }
            if (first && id < P.vocab) {
                let v = L[id];
                L[id] = select(v * P.rep_penalty, v / P.rep_penalty, v > 0.0);
            }
        }
        storageBarrier();
    }

    // 2. Greedy.
    let best_raw = argmax_reduce(lid);
    let best = select(best_raw, 0u, best_raw == NONE);
    let best_logit = red_v[0];
    workgroupBarrier();
    if (P.temperature <= 0.0 || P.top_k == 1u) {
        if (lid == 0u) {
            finish(best);
        }
        return;
    }

    // 3. Thresholds at temperature 1, as order keys: keep i iff order_key(l_i) >= key_lo.
    let m = best_logit;
    var key_lo = 0u;
    if (P.top_k > 0u && P.top_k < P.vocab) {
        key_lo = radix_select(lid, P.top_k, false, 0u, m, 0.0);
    }
    if (P.top_p < 1.0) {
        var z = 0.0;
        for (var i = lid; i < P.vocab; i += WG) {
            let l = logit(i);
            if (order_key(l) >= key_lo) {
                z += exp(l - m);
            }
        }
        z = block_sum(lid, z);
        // top_p <= 0 wants 1 unit of mass, which the top token alone reaches.
        let want = max(1u, u32(max(P.top_p, 0.0) * MASS_ONE));
        key_lo = max(key_lo, radix_select(lid, want, true, key_lo, m, MASS_ONE / z));
    }
    if (P.min_p > 0.0) {
        key_lo = max(key_lo, order_key(m + log(P.min_p)));
    }

    // 4-5. Temperature on the survivors, then an inverse-CDF pick in id order: each thread
    // owns a contiguous chunk of ids.
    let chunk = (P.vocab + WG - 1u) / WG;
    let lo = min(lid * chunk, P.vocab);
    let hi = min(lo + chunk, P.vocab);
    var sum = 0.0;
    for (var i = lo; i < hi; i++) {
        if (order_key(logit(i)) >= key_lo) {
            sum += tempered(i, m);
        }
    }
    red_v[lid] = sum;
    workgroupBarrier();
    if (lid == 0u) {
        var total = 0.0;
        for (var j = 0u; j < WG; j++) {
            total += red_v[j];
        }
        let goal = uniform01(P.seed, S.rand_step) * total;
        var acc = 0.0;
        var chosen = NONE;
        var last = NONE;
        var last_base = 0.0;
        for (var j = 0u; j < WG; j++) {
            let s = red_v[j];
            if (s > 0.0) {
                if (acc + s > goal) {
                    chosen = j;
                    break;
                }
                last = j;
                last_base = acc;
            }
            acc += s;
        }
        if (chosen == NONE) {
            // Rounding: target is at the very end; take the last kept id.
            chosen = last;
            acc = last_base;
        }
        pick_thread = chosen;
        pick_base = acc;
        pick_target = goal;
        if (chosen == NONE) {
            // Nothing kept (min_p > 1): fall back to greedy.
            finish(best);
        }
    }
    workgroupBarrier();
    if (lid == pick_thread) {
        var acc = pick_base;
        var last = NONE;
        var chosen = NONE;
        for (var i = lo; i < hi; i++) {
            if (order_key(logit(i)) >= key_lo) {
                acc += tempered(i, m);
                last = i;
                if (acc > pick_target) {
                    chosen = i;
                    break;
                }
            }
        }
        finish(select(chosen, last, chosen == NONE));
    }
}
