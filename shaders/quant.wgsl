// quant.wgsl: dequantization of ggml blocks, shared by the matvec and embedding kernels.
//
// The kernel module declares `W: array<u32>` (one weight part: whole rows of `row_bytes`
// bytes) and src/gpu/kernels.rs prepends `const WTYPE: u32 = <ggml type id>;`, so every
// branch on WTYPE below is resolved when the pipeline compiles. Blocks are read in place at
// byte offsets: their sizes (18, 20, 22, 34, 210 bytes...) are even but not multiples of 4, so
// every field starts on an even byte and a 4-byte read spans at most two words.
//
// A row is walked in UNITS of 32 values: one block for Q4_0/Q4_1/Q5_0/Q5_1/Q8_0, one eighth
// of a 256-value super-block for Q4_K/Q5_K/Q6_K, 32 consecutive values for F32/F16/BF16 (the
// last unit of a float row may be partial). `decode_unit` returns a unit's values as 8 vec4s;
// vec4 j holds the 4 consecutive row elements starting at `unit_start(u, j)`. The arithmetic
// follows src/quant.rs (ggml's) operand order so values match the CPU reference.

const T_F32: u32 = 0u;
const T_F16: u32 = 1u;
const T_Q4_0: u32 = 2u;
const T_Q4_1: u32 = 3u;
const T_Q5_0: u32 = 6u;
const T_Q5_1: u32 = 7u;
const T_Q8_0: u32 = 8u;
const T_Q4_K: u32 = 12u;
const T_Q5_K: u32 = 13u;
const T_Q6_K: u32 = 14u;
const T_BF16: u32 = 30u;

fn is_float_type() -> bool {
    return WTYPE == T_F32 || WTYPE == T_F16 || WTYPE == T_BF16;
}

fn is_k_type() -> bool {
    return WTYPE == T_Q4_K || WTYPE == T_Q5_K || WTYPE == T_Q6_K;
}

// Whether every block (and so every field) starts on a 4-byte boundary: block sizes that are
// multiples of 4, in parts that start at byte 0. (F16/BF16 rows of odd length do not.)
fn aligned_blocks() -> bool {
    return WTYPE == T_F32 || WTYPE == T_Q4_1 || WTYPE == T_Q5_1 || WTYPE == T_Q4_K || WTYPE == T_Q5_K;
}

// The 4 bytes at an even byte offset. Unaligned reads take both words and pick without a
// branch: CPU implementations run a workgroup as SIMD lanes and would run both sides.
fn w_u32(byte: u32) -> u32 {
    let i = byte >> 2u;
    if (aligned_blocks()) {
        return W[i];
    }
    let lo = W[i];
    let hi = W[i + 1u];
    return select((lo >> 16u) | (hi << 16u), lo, (byte & 2u) == 0u);
}

// The f16 at an even byte offset, as f32.
fn w_f16(byte: u32) -> f32 {
    return unpack2x16float(W[byte >> 2u] >> ((byte & 2u) * 8u)).x;
}

// The two f16s at a 4-byte aligned offset (d and m/dmin of the aligned block types): one read.
fn w_f16x2(byte: u32) -> vec2<f32> {
    return unpack2x16float(W[byte >> 2u]);
}

// Blocks of Q4_0/Q5_0/Q8_0 (18, 22, 34 bytes) start at an even offset `b`: `b & 2` says
// whether their f16 scale is the high half of the first word. Reading the words that cover
// the block once (5, 6, 9) and shifting takes half the reads of `w_u32` per field.
fn block_word(w0: u32, w1: u32, odd: bool) -> u32 {
    // 4 bytes starting 2 bytes into w0 (even block) or at w1 (odd block).
    return select((w0 >> 16u) | (w1 << 16u), w1, odd);
}
fn block_scale(w0: u32, odd: bool) -> f32 {
    return unpack2x16float(select(w0, w0 >> 16u, odd)).x;
}

// The 4 bytes of a word, each as a u32.
fn bytes4(q: u32) -> vec4<u32> {
    return (vec4<u32>(q) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u);
}

// Low and high nibbles of the 4 bytes of a word.
fn nib_lo(q: u32) -> vec4<u32> {
    return bytes4(q) & vec4<u32>(15u);
}
fn nib_hi(q: u32) -> vec4<u32> {
    return bytes4(q) >> vec4<u32>(4u);
}

// Four consecutive bits of `q` starting at bit `at`, each moved to bit 4 (the fifth bit of a
// Q5 quant).
fn bit5(q: u32, at: u32) -> vec4<u32> {
    return ((vec4<u32>(q >> at) >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(1u)) << vec4<u32>(4u);
}

// The 4 bytes of a word as signed values.
fn sbytes4(q: u32) -> vec4<f32> {
    let s = bitcast<vec4<i32>>(vec4<u32>(q) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u);
    return vec4<f32>(s);
}

// Byte i (0..12) of the K-quant scales, given as three words.
fn scale_byte(s: vec3<u32>, i: u32) -> u32 {
    return (s[i >> 2u] >> ((i & 3u) * 8u)) & 255u;
}

// (scale, min) of sub-block j of a Q4_K/Q5_K super-block: eight 6-bit pairs in 12 bytes.
fn k_scale_min(s: vec3<u32>, j: u32) -> vec2<f32> {
    if (j < 4u) {
        return vec2<f32>(f32(scale_byte(s, j) & 63u), f32(scale_byte(s, j + 4u) & 63u));
    }
    let sc = (scale_byte(s, j + 4u) & 15u) | ((scale_byte(s, j - 4u) >> 6u) << 4u);
    let m = (scale_byte(s, j + 4u) >> 4u) | ((scale_byte(s, j) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(m));
}

// Row element of the first value of vec4 j of unit u.
fn unit_start(u: u32, j: u32) -> u32 {
    if (WTYPE == T_Q4_K || WTYPE == T_Q5_K) {
        // unit = (super-block, 64-group g, half): 16 low nibbles, then their 16 high nibbles.
        let p = u & 7u;
        return (u >> 3u) * 256u + (p >> 1u) * 64u + (p & 1u) * 16u + (j >> 2u) * 32u + (j & 3u) * 4u;
    }
    if (WTYPE == T_Q6_K) {
        // unit = (super-block, 128-half h, 8-wide slice l0): 4 runs of 8, 32 apart.
        let p = u & 7u;
        return (u >> 3u) * 256u + (p >> 2u) * 128u + (p & 3u) * 8u + (j >> 1u) * 32u + (j & 1u) * 4u;
    }
    return u * 32u + j * 4u;
}

// The 32 values of unit u of the row starting at byte `rb`. Values past `row_len` (only in
// the last unit of a float row) are 0.
fn decode_unit(rb: u32, u: u32, row_len: u32) -> array<vec4<f32>, 8> {
    var v: array<vec4<f32>, 8>;
    if (WTYPE == T_F32) {
        let w = rb / 4u + u * 32u;
        for (var j = 0u; j < 8u; j++) {
            let i = w + j * 4u;
            v[j] = vec4<f32>(bitcast<f32>(W[i]), bitcast<f32>(W[i + 1u]), bitcast<f32>(W[i + 2u]), bitcast<f32>(W[i + 3u]));
        }
    } else if (WTYPE == T_F16 || WTYPE == T_BF16) {
        for (var j = 0u; j < 8u; j++) {
            let b = rb + (u * 32u + j * 4u) * 2u;
            let a = w_u32(b);
            let c = w_u32(b + 4u);
            if (WTYPE == T_F16) {
                v[j] = vec4<f32>(unpack2x16float(a), unpack2x16float(c));
            } else {
                v[j] = vec4<f32>(bitcast<f32>(a << 16u), bitcast<f32>(a & 0xFFFF0000u), bitcast<f32>(c << 16u), bitcast<f32>(c & 0xFFFF0000u));
            }
        }
    } else if (WTYPE == T_Q4_0) {
        // d:f16, qs[16]; value = (q - 8) * d; low nibbles are elements 0..16, high 16..32
        let b = rb + u * 18u;
        let odd = (b & 2u) != 0u;
        var w: array<u32, 5>;
        for (var k = 0u; k < 5u; k++) {
            w[k] = W[(b >> 2u) + k];
        }
        let d = block_scale(w[0], odd);
        for (var k = 0u; k < 4u; k++) {
            let q = block_word(w[k], w[k + 1u], odd);
            v[k] = (vec4<f32>(nib_lo(q)) - 8.0) * d;
            v[k + 4u] = (vec4<f32>(nib_hi(q)) - 8.0) * d;
        }
    } else if (WTYPE == T_Q4_1) {
        // d:f16, m:f16, qs[16]; value = q * d + m
        let b = rb + u * 20u;
        let dm = w_f16x2(b);
        let d = dm.x;
        let m = dm.y;
        for (var k = 0u; k < 4u; k++) {
            let q = w_u32(b + 4u + k * 4u);
            v[k] = vec4<f32>(nib_lo(q)) * d + m;
            v[k + 4u] = vec4<f32>(nib_hi(q)) * d + m;
        }
    } else if (WTYPE == T_Q5_0) {
        // d:f16, qh:u32 (fifth bits), qs[16]; value = (q - 16) * d
        let b = rb + u * 22u;
        let odd = (b & 2u) != 0u;
        var w: array<u32, 6>;
        for (var k = 0u; k < 6u; k++) {
            w[k] = W[(b >> 2u) + k];
        }
        let d = block_scale(w[0], odd);
        let qh = block_word(w[0], w[1], odd);
        for (var k = 0u; k < 4u; k++) {
            let q = block_word(w[k + 1u], w[k + 2u], odd);
            v[k] = (vec4<f32>(nib_lo(q) | bit5(qh, k * 4u)) - 16.0) * d;
            v[k + 4u] = (vec4<f32>(nib_hi(q) | bit5(qh, 16u + k * 4u)) - 16.0) * d;
        }
    } else if (WTYPE == T_Q5_1) {
        // d:f16, m:f16, qh:u32, qs[16]; value = q * d + m
        let b = rb + u * 24u;
        let dm = w_f16x2(b);
        let d = dm.x;
        let m = dm.y;
        let qh = w_u32(b + 4u);
        for (var k = 0u; k < 4u; k++) {
            let q = w_u32(b + 8u + k * 4u);
            v[k] = vec4<f32>(nib_lo(q) | bit5(qh, k * 4u)) * d + m;
            v[k + 4u] = vec4<f32>(nib_hi(q) | bit5(qh, 16u + k * 4u)) * d + m;
        }
    } else if (WTYPE == T_Q8_0) {
        // d:f16, qs[32]:i8; value = q * d
        let b = rb + u * 34u;
        let odd = (b & 2u) != 0u;
        var w: array<u32, 9>;
        for (var k = 0u; k < 9u; k++) {
            w[k] = W[(b >> 2u) + k];
        }
        let d = block_scale(w[0], odd);
        for (var k = 0u; k < 8u; k++) {
            v[k] = sbytes4(block_word(w[k], w[k + 1u], odd)) * d;
        }
    } else if (WTYPE == T_Q4_K || WTYPE == T_Q5_K) {
        // d:f16, dmin:f16, scales[12], (Q5_K: qh[32]), qs[128]. Group g of 64 values uses
        // qs[32g..32g+32]: low nibbles are values 0..32 (sub-block 2g), high ones 32..64
        // (sub-block 2g+1). This unit takes bytes l = 16*half .. +16 of the group.
        let p = u & 7u;
        let g = p >> 1u;
        let l0 = (p & 1u) * 16u;
        var b = rb + (u >> 3u) * 144u;
        if (WTYPE == T_Q5_K) {
            b = rb + (u >> 3u) * 176u;
        }
        let dd = w_f16x2(b);
        let d = dd.x;
        let dmin = dd.y;
        let sc = vec3<u32>(w_u32(b + 4u), w_u32(b + 8u), w_u32(b + 12u));
        let sm1 = k_scale_min(sc, 2u * g);
        let sm2 = k_scale_min(sc, 2u * g + 1u);
        let d1 = d * sm1.x;
        let m1 = dmin * sm1.y;
        let d2 = d * sm2.x;
        let m2 = dmin * sm2.y;
        for (var k = 0u; k < 4u; k++) {
            var lo: vec4<u32>;
            var hi: vec4<u32>;
            if (WTYPE == T_Q4_K) {
                let q = w_u32(b + 16u + g * 32u + l0 + k * 4u);
                lo = nib_lo(q);
                hi = nib_hi(q);
            } else {
                let q = w_u32(b + 48u + g * 32u + l0 + k * 4u);
                let h = bytes4(w_u32(b + 16u + l0 + k * 4u));
                lo = nib_lo(q) | (((h >> vec4<u32>(2u * g)) & vec4<u32>(1u)) << vec4<u32>(4u));
                hi = nib_hi(q) | (((h >> vec4<u32>(2u * g + 1u)) & vec4<u32>(1u)) << vec4<u32>(4u));
            }
            v[k] = d1 * vec4<f32>(lo) - m1;
            v[k + 4u] = d2 * vec4<f32>(hi) - m2;
        }
    } else if (WTYPE == T_Q6_K) {
        // ql[128], qh[64], scales[16]:i8, d:f16. Half h (128 values) uses ql[64h..64h+64],
        // qh[32h..32h+32], scales[8h..8h+8]; byte l of each feeds values l, l+32, l+64, l+96.
        // This unit takes l = l0 .. l0+8 (one scale per run: scales[is + 2r], is = l0 / 16).
        let p = u & 7u;
        let h = p >> 2u;
        let l0 = (p & 3u) * 8u;
        let b = rb + (u >> 3u) * 210u;
        let d = w_f16(b + 208u);
        let s0 = w_u32(b + 192u + h * 8u);
        let s1 = w_u32(b + 196u + h * 8u);
        let is = l0 >> 4u;
        let sc = vec4<f32>(sbytes4(s0)[is], sbytes4(s0)[is + 2u], sbytes4(s1)[is], sbytes4(s1)[is + 2u]);
        let ds = d * sc;
        for (var k = 0u; k < 2u; k++) {
            let a = bytes4(w_u32(b + h * 64u + l0 + k * 4u));
            let c = bytes4(w_u32(b + h * 64u + 32u + l0 + k * 4u));
            let qh = bytes4(w_u32(b + 128u + h * 32u + l0 + k * 4u));
            let q1 = (a & vec4<u32>(15u)) | ((qh & vec4<u32>(3u)) << vec4<u32>(4u));
            let q2 = (c & vec4<u32>(15u)) | (((qh >> vec4<u32>(2u)) & vec4<u32>(3u)) << vec4<u32>(4u));
            let q3 = (a >> vec4<u32>(4u)) | (((qh >> vec4<u32>(4u)) & vec4<u32>(3u)) << vec4<u32>(4u));
            let q4 = (c >> vec4<u32>(4u)) | (((qh >> vec4<u32>(6u)) & vec4<u32>(3u)) << vec4<u32>(4u));
            v[k] = ds.x * (vec4<f32>(q1) - 32.0);
            v[2u + k] = ds.y * (vec4<f32>(q2) - 32.0);
            v[4u + k] = ds.z * (vec4<f32>(q3) - 32.0);
            v[6u + k] = ds.w * (vec4<f32>(q4) - 32.0);
        }
    }
    if (is_float_type()) {
        for (var j = 0u; j < 8u; j++) {
            let e = vec4<u32>(u * 32u + j * 4u) + vec4<u32>(0u, 1u, 2u, 3u);
            v[j] = select(vec4<f32>(0.0), v[j], e < vec4<u32>(row_len));
        }
    }
    return v;
}
