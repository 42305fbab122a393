// embed.wgsl: out[t] = row ids[id_offset + t] of the token embedding, dequantized (needs
// quant.wgsl). The ids are read on the GPU, so the token the sampler just wrote feeds the
// next step without a CPU round trip. A row-split table is one dispatch per part; each
// dispatch writes only the tokens whose row lives in its part. Ids past the table write
// nothing (the CPU validates prompt ids; the sampler only emits ids < vocab).

struct Params {
    row_len: u32,   // values per row (= model dim)
    units: u32,     // 32-value units per row
    row_bytes: u32,
    first_row: u32, // first row (token id) held by this part
    rows: u32,      // rows in this part
    n_tokens: u32,  // T
    id_offset: u32, // index in IDS of token 0
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> W: array<u32>;         // [rows][row_bytes] blocks of WTYPE
@group(0) @binding(1) var<storage, read> IDS: array<u32>;       // [id_offset + T] token ids
@group(0) @binding(2) var<storage, read_write> OUT: array<f32>; // [T][row_len]
@group(0) @binding(3) var<uniform> P: Params;

// Dispatch (ceil(units / 64), T, 1): one thread per unit of one token's row.
@compute @workgroup_size(64)
fn embed(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let u = wid.x * 64u + lid;
    let t = wid.y;
    if (u >= P.units || t >= P.n_tokens) {
        return;
    }
    let id = IDS[P.id_offset + t];
    if (id < P.first_row || id - P.first_row >= P.rows) {
        return;
    }
    let v = decode_unit((id - P.first_row) * P.row_bytes, u, P.row_len);
    for (var j = 0u; j < 8u; j++) {
        let s = unit_start(u, j);
        for (var k = 0u; k < 4u; k++) {
            if (s + k < P.row_len) {
                OUT[t * P.row_len + s + k] = v[j][k];
            }
        }
    }
}
