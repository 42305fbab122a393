// rope.wgsl: rotary position embedding in llama.cpp's NORM mode (Llama): ADJACENT pairs
// (x[2i], x[2i+1]) of the first rope_dim values of every head rotate by
//     theta = (pos * inv_freq[i]) / freq_div[i],   inv_freq[i] = base^(-2i / rope_dim)
// where inv_freq comes from the CPU (computed in f64) and freq_div is rope_freqs.weight
// (Llama 3.1 scaling) or all ones. In place on q or k.

struct Params {
    n_heads: u32,
    head_dim: u32,
    half_rope: u32, // rope_dim / 2 pairs per head
    n_tokens: u32,  // T; token t is at position step.pos + t
}

@group(0) @binding(0) var<storage, read_write> X: array<f32>; // [T][n_heads][head_dim]
@group(0) @binding(1) var<storage, read> INV_FREQ: array<f32>; // [half_rope]
@group(0) @binding(2) var<storage, read> FREQ_DIV: array<f32>; // [half_rope]
@group(0) @binding(3) var<uniform> P: Params;
@group(0) @binding(4) var<uniform> S: Step;

// (cos, sin) of theta. Angles reach pos (thousands of radians) and GPU sin/cos are only
// accurate near zero, so reduce modulo 2*pi first (Cody-Waite: 2*pi = C1 + C2 + C3 with C1
// short enough that k * C1 is exact for |k| < 2^16, i.e. positions below ~400k).
fn cos_sin(theta: f32) -> vec2<f32> {
    let k = round(theta * 0.15915493667125702);
    let r = ((theta - k * 6.28125) - k * 0.0019353071693331003) - k * 1.0253131677018246e-11;
    return vec2<f32>(cos(r), sin(r));
}

// One thread per (token, head, pair).
@compute @workgroup_size(64)
fn rope(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = group_index(wid, nwg) * 64u + lid;
    if (idx >= P.n_tokens * P.n_heads * P.half_rope) {
        return;
    }
    let i = idx % P.half_rope;
    let th = idx / P.half_rope; // t * n_heads + head
    let t = th / P.n_heads;
    let theta = (f32(S.pos + t) * INV_FREQ[i]) / FREQ_DIV[i];
    let cs = cos_sin(theta);
    let b = th * P.head_dim + 2u * i;
    let x0 = X[b];
    let x1 = X[b + 1u];
    X[b] = x0 * cs.x - x1 * cs.y;
    X[b + 1u] = x0 * cs.y + x1 * cs.x;
}
