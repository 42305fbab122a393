// matvec.wgsl: y = W x for quantized W, dequantizing on the fly (needs quant.wgsl).
//
// `matvec` (decode): one workgroup per row. Its 64 threads walk the row's 32-value units
// (thread i takes units i, i+64, ...), so neighbouring threads read neighbouring bytes and
// every weight byte is read once; partial sums meet in workgroup memory (no subgroups).
// `matmul` (prefill): the same walk, but each decoded unit is used for a tile of up to 8
// input vectors, so the weights are read once per 8 tokens instead of once per token.
//
// A tensor split by rows across buffers is one dispatch per part; `out_row` places the
// part's rows in y. Grids over 65535 rows are 2-D (see group_index).

struct Params {
    rows: u32,      // rows in this weight part
    row_len: u32,   // values per row (= length of each x)
    units: u32,     // 32-value units per row
    row_bytes: u32, // bytes per row
    out_row: u32,   // row of y that this part's row 0 produces
    y_stride: u32,  // values per token in Y (rows of the whole tensor)
    n_tokens: u32,  // T (matmul)
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> W: array<u32>;       // [rows][row_bytes] blocks of WTYPE
@group(0) @binding(1) var<storage, read> X: array<f32>;       // [T][row_len]
@group(0) @binding(2) var<storage, read_write> Y: array<f32>; // [T][y_stride]
@group(0) @binding(3) var<uniform> P: Params;

const WG: u32 = 64u;
const TILE_T: u32 = 8u;

var<workgroup> red: array<f32, WG>;
var<workgroup> red_t: array<array<f32, WG>, TILE_T>;

// x[t][start .. start+4]; float rows may end inside a unit, quantized rows never do.
fn x4(t: u32, start: u32) -> vec4<f32> {
    let i = t * P.row_len + start;
    if (is_float_type()) {
        var r = vec4<f32>(0.0);
        for (var k = 0u; k < 4u; k++) {
            if (start + k < P.row_len) {
                r[k] = X[i + k];
            }
        }
        return r;
    }
    return vec4<f32>(X[i], X[i + 1u], X[i + 2u], X[i + 3u]);
}

@compute @workgroup_size(64)
fn matvec(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = group_index(wid, nwg);
    if (row >= P.rows) {
        return;
    }
    let rb = row * P.row_bytes;
    var acc = 0.0;
    for (var u = lid; u < P.units; u += WG) {
        let v = decode_unit(rb, u, P.row_len);
        for (var j = 0u; j < 8u; j++) {
            acc += dot(v[j], x4(0u, unit_start(u, j)));
        }
    }
    red[lid] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        Y[P.out_row + row] = red[0];
    }
}

// Dispatch (row grid x, row grid y, ceil(T / TILE_T)).
@compute @workgroup_size(64)
fn matmul(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = group_index(wid, nwg);
    if (row >= P.rows) {
        return;
    }
    let t0 = wid.z * TILE_T;
    let nt = min(TILE_T, P.n_tokens - t0);
    let rb = row * P.row_bytes;
    var acc: array<f32, TILE_T>;
    for (var u = lid; u < P.units; u += WG) {
        let v = decode_unit(rb, u, P.row_len);
        for (var j = 0u; j < 8u; j++) {
            let s = unit_start(u, j);
            for (var t = 0u; t < TILE_T; t++) {
                if (t < nt) {
                    acc[t] += dot(v[j], x4(t0 + t, s));
                }
            }
        }
    }
    for (var t = 0u; t < TILE_T; t++) {
        red_t[t][lid] = acc[t];
    }
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            for (var t = 0u; t < TILE_T; t++) {
                red_t[t][lid] += red_t[t][lid + s];
            }
        }
        workgroupBarrier();
    }
    if (lid < nt) {
        Y[(t0 + lid) * P.y_stride + P.out_row + row] = red_t[lid][0];
    }
}
