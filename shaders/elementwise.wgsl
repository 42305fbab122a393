// elementwise.wgsl: in-place element-wise ops on n values (A is both input and output, so a
// buffer is never bound twice in one dispatch).
//   add:    A = A + B            (residual connection)
//   swiglu: A = silu(A) * B      (A = gate, B = up; silu(g) = g / (1 + exp(-g)), as ggml)

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read_write> A: array<f32>; // [n]
@group(0) @binding(1) var<storage, read> B: array<f32>;       // [n]
@group(0) @binding(2) var<uniform> P: Params;

const WG: u32 = 256u;

@compute @workgroup_size(256)
fn add(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = group_index(wid, nwg) * WG + lid;
    if (i < P.n) {
        A[i] = A[i] + B[i];
    }
}

@compute @workgroup_size(256)
fn swiglu(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = group_index(wid, nwg) * WG + lid;
    if (i < P.n) {
        let g = A[i];
        A[i] = g / (1.0 + exp(-g)) * B[i];
    }
}
