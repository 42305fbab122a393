// attention.wgsl: the KV cache and grouped-query attention.
//
// Cache layout, one K and one V buffer per layer: [n_kv_heads][ctx][head_dim] f32, so the
// keys of one head are contiguous and a query head streams through them in order.
//
// kv_append: writes k and v of T new tokens at positions step.pos + t.
// attention (two passes, as in flash-decoding, so long contexts spread over many workgroups
// instead of one per head): query token t (at position step.pos + t) of head h attends over
// positions 0 ..= step.pos + t of kv head h / (n_heads / n_kv_heads), scores scaled by
// 1/sqrt(head_dim).
//   attention_part: one workgroup per (head, chunk of `chunk` positions, token) walks its
//     chunk in tiles of 64 with an online softmax (running max m and sum l; earlier partial
//     sums are rescaled by exp(m_old - m_new)) and stores (m, l, unnormalised output).
//     Chunks past the attended positions store (-max, 0) and stop at once, so the dispatch
//     is sized for the whole cache but costs nothing beyond the current position.
//   attention_combine: one workgroup per (head, token) merges the chunks:
//     out = sum_c o_c exp(m_c - M) / sum_c l_c exp(m_c - M), M = max_c m_c.
// Workgroup memory never grows with the context.

struct Params {
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32, // a multiple of 4, at most MAX_HEAD_DIM
    ctx: u32,      // positions the cache holds
    n_tokens: u32, // T
    scale: f32,    // 1 / sqrt(head_dim)
    chunk: u32,    // positions per attention_part workgroup (a multiple of WG)
    n_chunks: u32, // ceil(ctx / chunk)
}

// Vectors are read and written as vec4s (head_dim is a multiple of 4): a quarter of the memory
// instructions, which CPU implementations pay for per SIMD lane.
@group(0) @binding(0) var<storage, read> QN: array<vec4<f32>>;       // attention: [T][n_heads][head_dim] (after RoPE)
@group(0) @binding(1) var<storage, read> KN: array<vec4<f32>>;       // kv_append: [T][n_kv_heads][head_dim] (after RoPE)
@group(0) @binding(2) var<storage, read> VN: array<vec4<f32>>;       // kv_append: [T][n_kv_heads][head_dim]
@group(0) @binding(3) var<storage, read_write> KC: array<vec4<f32>>; // [n_kv_heads][ctx][head_dim]
@group(0) @binding(4) var<storage, read_write> VC: array<vec4<f32>>; // [n_kv_heads][ctx][head_dim]
@group(0) @binding(5) var<storage, read_write> OUT: array<f32>; // attention: [T][n_heads][head_dim]
@group(0) @binding(6) var<uniform> P: Params;
@group(0) @binding(7) var<uniform> S: Step;
@group(0) @binding(8) var<storage, read_write> PART: array<f32>; // [T][n_heads][n_chunks][2 + head_dim]: m, l, o

const WG: u32 = 64u;
const MAX_HEAD_DIM: u32 = 256u; // 4 * WG: each thread of attention_part owns one vec4 of the output

// One thread per (token, 4 kv values).
@compute @workgroup_size(64)
fn kv_append(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = group_index(wid, nwg) * WG + lid;
    let hd4 = P.head_dim / 4u;
    let kv4 = P.n_kv_heads * hd4;
    if (idx >= P.n_tokens * kv4) {
        return;
    }
    let t = idx / kv4;
    let i = idx % kv4;
    let pos = S.pos + t;
    if (pos >= P.ctx) {
        return;
    }
    let dst = ((i / hd4) * P.ctx + pos) * hd4 + i % hd4;
    KC[dst] = KN[idx];
    VC[dst] = VN[idx];
}

var<workgroup> q_sh: array<vec4<f32>, 64>; // [MAX_HEAD_DIM / 4]
var<workgroup> w_sh: array<f32, WG>; // softmax weights of the current tile
var<workgroup> red: array<f32, WG>;

fn reduce_max(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] = max(red[lid], red[lid + s]);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn reduce_sum(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

// Positions attended by token t, and where its partial results start for head h, chunk c.
fn attended(t: u32) -> u32 {
    return min(S.pos + t + 1u, P.ctx);
}
fn part_base(t: u32, h: u32, c: u32) -> u32 {
    return ((t * P.n_heads + h) * P.n_chunks + c) * (2u + P.head_dim);
}

// Dispatch (n_heads, n_chunks, T).
@compute @workgroup_size(64)
fn attention_part(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let c = wid.y;
    let t = wid.z;
    let hd = P.head_dim;
    let n = attended(t);
    let pb = part_base(t, h, c);
    let p0 = c * P.chunk;
    if (p0 >= n) {
        if (lid == 0u) {
            PART[pb] = -F32_MAX;
            PART[pb + 1u] = 0.0;
        }
        return;
    }
    let p1 = min(p0 + P.chunk, n);
    let hd4 = hd / 4u;
    let kv_base = (h / (P.n_heads / P.n_kv_heads)) * P.ctx * hd4; // in vec4s
    let q_base = (t * P.n_heads + h) * hd4;
    if (lid < hd4) {
        q_sh[lid] = QN[q_base + lid];
    }
    workgroupBarrier();

    var m = -F32_MAX;         // running max of the scores
    var l = 0.0;              // running sum of exp(score - m)
    var o = vec4<f32>(0.0);   // output dims 4 lid .. 4 lid + 4, unnormalised
    for (var t0 = p0; t0 < p1; t0 += WG) {
        // Score of position t0 + lid.
        let p = t0 + lid;
        var s = -F32_MAX;
        if (p < p1) {
            let kb = kv_base + p * hd4;
            var acc = 0.0;
            for (var d = 0u; d < hd4; d++) {
                acc += dot(q_sh[d], KC[kb + d]);
            }
            s = acc * P.scale;
        }
        let m_new = max(m, reduce_max(lid, s));
        var e = 0.0;
        if (p < p1) {
            e = exp(s - m_new);
        }
        w_sh[lid] = e;
        let corr = exp(m - m_new);
        l = l * corr + reduce_sum(lid, e); // reduce_sum's barriers also publish w_sh
        let count = min(WG, p1 - t0);
        if (lid < hd4) {
            var acc = o * corr;
            for (var j = 0u; j < count; j++) {
                acc += w_sh[j] * VC[kv_base + (t0 + j) * hd4 + lid];
            }
            o = acc;
        }
        m = m_new;
        workgroupBarrier(); // w_sh is rewritten by the next tile
    }
    if (lid == 0u) {
        PART[pb] = m;
        PART[pb + 1u] = l;
    }
    if (lid < hd4) {
        for (var k = 0u; k < 4u; k++) {
            PART[pb + 2u + 4u * lid + k] = o[k];
        }
    }
}

// Dispatch (n_heads, T, 1).
@compute @workgroup_size(64)
fn attention_combine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let t = wid.y;
    let hd = P.head_dim;
    let nc = (attended(t) + P.chunk - 1u) / P.chunk;
    var mx = -F32_MAX;
    for (var c = 0u; c < nc; c++) {
        mx = max(mx, PART[part_base(t, h, c)]);
    }
    var l = 0.0;
    for (var c = 0u; c < nc; c++) {
        let pb = part_base(t, h, c);
        l += PART[pb + 1u] * exp(PART[pb] - mx);
    }
    let q_base = (t * P.n_heads + h) * hd;
    for (var d = lid; d < hd; d += WG) {
        var acc = 0.0;
        for (var c = 0u; c < nc; c++) {
            let pb = part_base(t, h, c);
            acc += PART[pb + 2u + d] * exp(PART[pb] - mx);
        }
        OUT[q_base + d] = acc / l;
    }
}
