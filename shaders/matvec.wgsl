// matvec.wgsl: y = W x for quantized W, dequantizing on the fly (needs quant.wgsl).
//
// `matvec` (decode): one workgroup per ROWS consecutive rows. Its 64 threads walk the rows'
// 32-value units (thread i takes units i, i+64, ...), so neighbouring threads read
// neighbouring bytes and every weight byte is read once; each thread loads its slice of x
// once for all ROWS rows (x would otherwise be read from cache 4-8x as often as the
// weights); partial sums meet in workgroup memory (no subgroups).
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
const ROWS: u32 = 4u;   // rows per workgroup in matvec (src/gpu/ops/matvec.rs MATVEC_ROWS)
const TILE_T: u32 = 8u; // tokens per weight read in matmul (MATMUL_TILE)

var<workgroup> red_t: array<array<f32, WG>, TILE_T>; // [ROWS or TILE_T][WG] partial sums

// Sum red_t[k][0..WG] into red_t[k][0] for k < n.
fn reduce_rows(lid: u32, n: u32) {
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            for (var k = 0u; k < n; k++) {
                red_t[k][lid] += red_t[k][lid + s];
            }
        }
        workgroupBarrier();
    }
}

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
    let row0 = group_index(wid, nwg) * ROWS;
    if (row0 >= P.rows) {
        return;
    }
    let nr = min(ROWS, P.rows - row0);
    var acc: array<f32, ROWS>;
    for (var u = lid; u < P.units; u += WG) {
        var xs: array<vec4<f32>, 8>;
        for (var j = 0u; j < 8u; j++) {
            xs[j] = x4(0u, unit_start(u, j));
        }
        for (var r = 0u; r < ROWS; r++) {
            if (r < nr) {
                let v = decode_unit((row0 + r) * P.row_bytes, u, P.row_len);
                for (var j = 0u; j < 8u; j++) {
                    acc[r] += dot(v[j], xs[j]);
                }
            }
        }
    }
    for (var r = 0u; r < ROWS; r++) {
        red_t[r][lid] = acc[r];
    }
    reduce_rows(lid, ROWS);
    if (lid < nr) {
        Y[P.out_row + row0 + lid] = red_t[lid][0];
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
    reduce_rows(lid, TILE_T);
    if (lid < nt) {
        Y[(t0 + lid) * P.y_stride + P.out_row + row] = red_t[lid][0];
    }
}
