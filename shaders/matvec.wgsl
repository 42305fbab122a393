// matvec.wgsl: y = W x for quantized W, dequantizing on the fly (needs quant.wgsl).
//
// A workgroup's WG threads form row groups of SPLIT threads; a group owns ROWS consecutive
// rows. Its threads split the rows' 32-value units (thread s takes units s, s+SPLIT, ...), so
// neighbouring threads read neighbouring bytes and every weight byte is read once; with
// SPLIT > 1 their partial sums then meet in workgroup memory (no subgroups).
// `matvec` (decode): each slice of x is loaded once for the group's ROWS rows.
// `matmul` (prefill): each thread decodes a unit of its ROWS rows once and uses it for a tile
// of TILE_T tokens, so the weights are read once per TILE_T tokens instead of once per token.
//
// WG and SPLIT are set per kind of device (src/gpu/ops/matvec.rs `layout`): on GPUs, SPLIT
// threads per row (coalesced reads, no idle threads on short rows); on CPU implementations
// (lavapipe, SwiftShader) SPLIT = 1, since a workgroup runs as the SIMD lanes of one CPU
// thread, where barriers, workgroup memory and every lane's loads are what cost.
// Both kernels are branch-light for the same reason: rows and tokens past the end re-read the
// last one instead of branching, and their results are dropped.
//
// A tensor split by rows across buffers is one dispatch per part; `out_row` places the
// part's rows in y. Grids over 65535 workgroups are 2-D (see group_index).

struct Params {
    rows: u32,      // rows in this weight part
    row_len: u32,   // values per row (= length of each x), a multiple of 4
    units: u32,     // 32-value units per row
    row_bytes: u32, // bytes per row
    out_row: u32,   // row of y that this part's row 0 produces
    y_stride: u32,  // values per token in Y (rows of the whole tensor)
    n_tokens: u32,  // T (matmul)
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> W: array<u32>;       // [rows][row_bytes] blocks of WTYPE
@group(0) @binding(1) var<storage, read> X: array<vec4<f32>>; // [T][row_len / 4]
@group(0) @binding(2) var<storage, read_write> Y: array<f32>; // [T][y_stride]
@group(0) @binding(3) var<uniform> P: Params;

override WG: u32 = 64u;    // threads per workgroup, at most 64
override SPLIT: u32 = 64u; // threads per row group: a power of two, at most WG
const ROWS: u32 = 4u;      // rows per row group (src/gpu/ops/matvec.rs GROUP_ROWS)
const TILE_T: u32 = 8u;    // tokens per row group in matmul (MATMUL_TILE)

// Partial sums of the threads of a row group: TILE_T vec4s (one per token, over 4 rows) per
// thread; matvec uses the first.
var<workgroup> red: array<vec4<f32>, 512>; // [64 threads][TILE_T]

// Sum the first n partials of the SPLIT threads of each group into its first thread's.
fn reduce_group(lid: u32, n: u32) {
    let s = lid % SPLIT;
    for (var w = SPLIT / 2u; w > 0u; w >>= 1u) {
        workgroupBarrier();
        if (s < w) {
            for (var k = 0u; k < n; k++) {
                red[lid * TILE_T + k] += red[(lid + w) * TILE_T + k];
            }
        }
    }
    workgroupBarrier();
}

// vec4 j of unit u of token t's x. Float rows may end inside a unit: x past the row is 0
// (its weights are 0 too, but 0 * a NaN from the next token's x would not be).
fn x4(t: u32, u: u32, j: u32) -> vec4<f32> {
    let s = unit_start(u, j);
    if (is_float_type()) {
        if (s >= P.row_len) {
            return vec4<f32>(0.0);
        }
    }
    return X[(t * P.row_len + s) / 4u];
}

// Byte offset of row r of the group starting at row0. Rows past the part re-read its last
// row instead of branching; their sums are never written.
fn row_bytes_at(row0: u32, r: u32) -> u32 {
    return min(row0 + r, P.rows - 1u) * P.row_bytes;
}

@compute @workgroup_size(WG)
fn matvec(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let s = lid % SPLIT;
    let row0 = (group_index(wid, nwg) * (WG / SPLIT) + lid / SPLIT) * ROWS;
    let nr = min(ROWS, P.rows - min(row0, P.rows)); // 0 for groups past the last row
    var acc = vec4<f32>(0.0); // rows row0 .. row0+4
    for (var u = s; nr > 0u && u < P.units; u += SPLIT) {
        var xs: array<vec4<f32>, 8>;
        for (var j = 0u; j < 8u; j++) {
            xs[j] = x4(0u, u, j);
        }
        for (var r = 0u; r < ROWS; r++) {
            let v = decode_unit(row_bytes_at(row0, r), u, P.row_len);
            var d = 0.0;
            for (var j = 0u; j < 8u; j++) {
                d += dot(v[j], xs[j]);
            }
            acc[r] += d;
        }
    }
    if (SPLIT > 1u) {
        red[lid * TILE_T] = acc;
        reduce_group(lid, 1u);
        acc = red[lid * TILE_T];
    }
    if (s == 0u) {
        for (var r = 0u; r < ROWS; r++) {
            if (r < nr) {
                Y[P.out_row + row0 + r] = acc[r];
            }
        }
    }
}

// Dispatch (group grid x, group grid y, ceil(T / TILE_T)).
@compute @workgroup_size(WG)
fn matmul(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let s = lid % SPLIT;
    let row0 = (group_index(wid, nwg) * (WG / SPLIT) + lid / SPLIT) * ROWS;
    let nr = min(ROWS, P.rows - min(row0, P.rows));
    let t0 = wid.z * TILE_T;
    let nt = min(TILE_T, P.n_tokens - t0);
    var acc: array<vec4<f32>, TILE_T>; // [token][row]
    for (var u = s; nr > 0u && u < P.units; u += SPLIT) {
        // Decode the unit of all 4 rows once, then use it for every token of the tile.
        var v: array<array<vec4<f32>, 8>, ROWS>;
        for (var r = 0u; r < ROWS; r++) {
            v[r] = decode_unit(row_bytes_at(row0, r), u, P.row_len);
        }
        for (var t = 0u; t < TILE_T; t++) {
            // Tokens past the batch re-read its last one (in bounds); their sums are dropped.
            let xt = t0 + min(t, nt - 1u);
            var a = vec4<f32>(0.0);
            for (var j = 0u; j < 8u; j++) {
                let x = x4(xt, u, j);
                a += vec4<f32>(dot(v[0][j], x), dot(v[1][j], x), dot(v[2][j], x), dot(v[3][j], x));
            }
            acc[t] += a;
        }
    }
    if (SPLIT > 1u) {
        for (var t = 0u; t < TILE_T; t++) {
            red[lid * TILE_T + t] = acc[t];
        }
        reduce_group(lid, TILE_T);
        for (var t = 0u; t < TILE_T; t++) {
            acc[t] = red[lid * TILE_T + t];
        }
    }
    if (s == 0u) {
        for (var t = 0u; t < nt; t++) {
            for (var r = 0u; r < ROWS; r++) {
                if (r < nr) {
                    Y[(t0 + t) * P.y_stride + P.out_row + row0 + r] = acc[t][r];
                }
            }
        }
    }
}
