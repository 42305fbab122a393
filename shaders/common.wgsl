// common.wgsl: helpers shared by every kernel (prepended to each module by src/gpu/kernels.rs).

// The per-token uniform (src/gpu/buffers.rs `Step`): written once per token, bound by every op
// that needs the position or the sampler's random step.
struct Step {
    pos: u32,       // position of the first token of this step; token t of a batch is at pos + t
    rand_step: u32, // counter that feeds the sampler's random number
    _pad0: u32,
    _pad1: u32,
}

// Largest finite f32: stands in for -inf, which WGSL constant expressions cannot hold.
const F32_MAX: f32 = 3.4028234663852886e38;

// Grids wider than the per-dimension limit (65535 on WebGPU) are laid out 2-D by the host;
// this recovers the linear workgroup index. It is workgroup-uniform, so kernels may return
// early on it before barriers.
fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}

// PCG hash (Jarzynski & Olano, "Hash Functions for GPU Rendering", 2020). The CPU sampler
// mirrors it bit for bit.
fn pcg_hash(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// Uniform number in [0, 1) with 24 random bits, from a seed and a step counter.
fn uniform01(seed: u32, step: u32) -> f32 {
    return f32(pcg_hash(seed ^ pcg_hash(step)) >> 8u) * (1.0 / 16777216.0);
}

// Maps f32 to u32 so that a < b as floats iff key(a) < key(b) as integers (for radix select).
fn order_key(f: f32) -> u32 {
    let b = bitcast<u32>(f);
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}
