// norm.wgsl: RMSNorm, y = x * (1 / sqrt(mean(x^2) + eps)) * w, as ggml computes it
// ((x * scale) * w). One workgroup per row of n values; the sum of squares meets in
// workgroup memory.

struct Params {
    n: u32,    // values per row
    rows: u32, // rows (tokens)
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> X: array<f32>;       // [rows][n]
@group(0) @binding(1) var<storage, read> G: array<f32>;       // [n] norm weight (F32 in the file)
@group(0) @binding(2) var<storage, read_write> Y: array<f32>; // [rows][n]
@group(0) @binding(3) var<uniform> P: Params;

const WG: u32 = 256u;
var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(256)
fn rms_norm(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = group_index(wid, nwg);
    if (row >= P.rows) {
        return;
    }
    let base = row * P.n;
    var ss = 0.0;
    for (var i = lid; i < P.n; i += WG) {
        let x = X[base + i];
        ss += x * x;
    }
    red[lid] = ss;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let scale = 1.0 / sqrt(red[0] / f32(P.n) + P.eps);
    for (var i = lid; i < P.n; i += WG) {
        Y[base + i] = (X[base + i] * scale) * G[i];
    }
}
