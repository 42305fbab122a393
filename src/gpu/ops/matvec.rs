//! Dequantizing matrix-vector (decode) and matrix-matrix (prefill) products, and the
//! embedding lookup: the kernels that read quantized weights (`shaders/matvec.wgsl`,
//! `shaders/embed.wgsl` over `shaders/quant.wgsl`).

use super::{check_len, u32_of};
use crate::gpu::kernels::{Constants, Shader, KERNEL_TYPES};
use crate::gpu::{ensure, GpuBuffer, GpuError, GpuTensor, Kernels, Op, Tuning};

/// WGSL `matvec.wgsl::Params`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct MatvecParams {
    rows: u32,
    row_len: u32,
    units: u32,
    row_bytes: u32,
    out_row: u32,
    y_stride: u32,
    n_tokens: u32,
    _pad: u32,
}

/// WGSL `embed.wgsl::Params`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct EmbedParams {
    row_len: u32,
    units: u32,
    row_bytes: u32,
    first_row: u32,
    rows: u32,
    n_tokens: u32,
    id_offset: u32,
    _pad: u32,
}

/// Tokens per weight read in `matmul` (WGSL `TILE_T`).
pub const MATMUL_TILE: u64 = 8;
/// Rows per row group in `matvec` and `matmul` (WGSL `ROWS`).
pub const GROUP_ROWS: u64 = 4;

/// WGSL (`WG`, `SPLIT`) overrides: threads per workgroup, and per row group.
type Layout = (u32, u32);

/// The workgroup layout for rows of `units` 32-value units.
fn layout(tuning: Tuning, units: u64) -> Layout {
    match tuning {
        // Enough threads per row group that each takes one or two units: adjacent threads
        // read adjacent blocks (coalesced), and no thread idles on short rows (SmolLM2's
        // 576-wide rows are 18 units; Llama 3 8B's 4096 are 128).
        Tuning::Gpu => (64, 1 << units.clamp(1, 64).ilog2()),
        // One thread per row group: no reduction, no barrier. 16 threads (2 AVX2 SIMD
        // groups) x 4 rows keeps workgroups small enough to spread over every core.
        Tuning::Cpu => (16, 1),
    }
}

/// The pipeline constants of a layout. Pipelines are cached by their constants, which are
/// 'static: one table entry per layout `layout` can return.
fn constants(l: Layout) -> Constants {
    const TABLE: [(Layout, Constants); 8] = [
        ((64, 64), &[("WG", 64), ("SPLIT", 64)]),
        ((64, 32), &[("WG", 64), ("SPLIT", 32)]),
        ((64, 16), &[("WG", 64), ("SPLIT", 16)]),
        ((64, 8), &[("WG", 64), ("SPLIT", 8)]),
        ((64, 4), &[("WG", 64), ("SPLIT", 4)]),
        ((64, 2), &[("WG", 64), ("SPLIT", 2)]),
        ((64, 1), &[("WG", 64), ("SPLIT", 1)]),
        ((16, 1), &[("WG", 16), ("SPLIT", 1)]),
    ];
    TABLE.iter().find(|(k, _)| *k == l).map_or(TABLE[0].1, |(_, c)| *c)
}

/// 32-value units per row (quant.wgsl): quantized rows are whole blocks, float rows may end
/// in a partial unit.
fn units_per_row(w: &GpuTensor) -> u64 {
    w.row_len.div_ceil(32)
}

fn check_weight(op: &'static str, w: &GpuTensor) -> Result<(), GpuError> {
    if !KERNEL_TYPES.contains(&w.ty) {
        return Err(GpuError::UnsupportedType { op, tensor: w.name.clone(), ty: w.ty });
    }
    ensure(w.ty.bytes_for(w.row_len) == Some(w.row_bytes), op, || format!("tensor {:?}: rows are not whole blocks", w.name))
}

impl Kernels {
    /// `y[r] = dot(W[r, :], x)` for every row r of `w` (one dispatch per weight part).
    /// x: `[row_len]`, y: `[rows]`.
    pub async fn matvec(&self, w: &GpuTensor, x: &GpuBuffer, y: &GpuBuffer) -> Result<Op, GpuError> {
        self.matvec_impl("matvec", w, x, y, 1).await
    }

    /// `Y[t, r] = dot(W[r, :], X[t, :])` for t in 0..n_tokens: each weight unit decoded once
    /// per tile of [`MATMUL_TILE`] tokens. X: `[n_tokens][row_len]`, Y: `[n_tokens][rows]`.
    pub async fn matmul(&self, w: &GpuTensor, x: &GpuBuffer, y: &GpuBuffer, n_tokens: u64) -> Result<Op, GpuError> {
        self.matvec_impl("matmul", w, x, y, n_tokens).await
    }

    async fn matvec_impl(&self, entry: &'static str, w: &GpuTensor, x: &GpuBuffer, y: &GpuBuffer, n_tokens: u64) -> Result<Op, GpuError> {
        check_weight(entry, w)?;
        ensure(n_tokens >= 1, entry, || "no tokens".into())?;
        check_len(entry, "x", x, n_tokens * w.row_len)?;
        check_len(entry, "y", y, n_tokens * w.rows)?;
        u32_of(entry, "tokens x rows", n_tokens * w.rows)?;
        u32_of(entry, "tokens x row length", n_tokens * w.row_len)?;
        let tiles = if entry == "matmul" { n_tokens.div_ceil(MATMUL_TILE) } else { 1 };
        ensure(tiles <= self.gpu.max_workgroups_per_dim() as u64, entry, || format!("{n_tokens} tokens is too many for one dispatch"))?;

        ensure(w.row_len.is_multiple_of(4), entry, || format!("tensor {:?}: rows of {} values (x is read as vec4s)", w.name, w.row_len))?;
        let (wg, split) = layout(self.gpu.tuning, units_per_row(w));
        let pipeline = self.pipeline_with(Shader::Matvec, Some(w.ty), entry, constants((wg, split))).await?;
        let scope = self.gpu.scope();
        let mut op = Op::new(format!("{entry} {}", w.name));
        for part in &w.parts {
            let params = MatvecParams {
                rows: u32_of(entry, "rows", part.rows)?,
                row_len: u32_of(entry, "row length", w.row_len)?,
                units: u32_of(entry, "units", units_per_row(w))?,
                row_bytes: u32_of(entry, "row bytes", w.row_bytes)?,
                out_row: u32_of(entry, "first row", part.first_row)?,
                y_stride: u32_of(entry, "rows", w.rows)?,
                n_tokens: n_tokens as u32,
                _pad: 0,
            };
            let uniform = self.uniform(&format!("{entry} {} params", w.name), &params);
            let bg = self.bind(
                &op.name,
                &pipeline,
                &[
                    (0, part.buffer.as_entire_binding()),
                    (1, x.binding()),
                    (2, y.binding()),
                    (3, uniform.as_entire_binding()),
                ],
            );
            let rows_per_workgroup = GROUP_ROWS * (wg / split) as u64;
            let (gx, gy) = self.gpu.grid(part.rows.div_ceil(rows_per_workgroup), entry)?;
            op.push(&pipeline, bg, [gx, gy, tiles as u32]);
        }
        scope.check(&format!("binding {}", op.name)).await?;
        Ok(op)
    }

    /// `out[t, :] = row ids[id_offset + t] of w`, dequantized, for t in 0..n_tokens. The ids
    /// are read on the GPU (the sampler's output feeds the next step directly).
    /// ids: `[id_offset + n_tokens]` u32, out: `[n_tokens][row_len]`.
    pub async fn embed(&self, w: &GpuTensor, ids: &GpuBuffer, id_offset: u64, n_tokens: u64, out: &GpuBuffer) -> Result<Op, GpuError> {
        const OP: &str = "embed";
        check_weight(OP, w)?;
        ensure(n_tokens >= 1 && n_tokens <= self.gpu.max_workgroups_per_dim() as u64, OP, || format!("{n_tokens} tokens"))?;
        check_len(OP, "ids", ids, id_offset + n_tokens)?;
        check_len(OP, "out", out, n_tokens * w.row_len)?;
        u32_of(OP, "tokens x row length", n_tokens * w.row_len)?;
        let units = units_per_row(w);
        let groups_x = units.div_ceil(64);
        ensure(groups_x <= self.gpu.max_workgroups_per_dim() as u64, OP, || format!("rows of {} values are too long", w.row_len))?;

        let pipeline = self.pipeline(Shader::Embed, Some(w.ty), "embed").await?;
        let scope = self.gpu.scope();
        let mut op = Op::new(format!("embed {}", w.name));
        for part in &w.parts {
            let params = EmbedParams {
                row_len: u32_of(OP, "row length", w.row_len)?,
                units: units as u32,
                row_bytes: u32_of(OP, "row bytes", w.row_bytes)?,
                first_row: u32_of(OP, "first row", part.first_row)?,
                rows: u32_of(OP, "rows", part.rows)?,
                n_tokens: n_tokens as u32,
                id_offset: u32_of(OP, "id offset", id_offset)?,
                _pad: 0,
            };
            let uniform = self.uniform("embed params", &params);
            let bg = self.bind(
                &op.name,
                &pipeline,
                &[(0, part.buffer.as_entire_binding()), (1, ids.binding()), (2, out.binding()), (3, uniform.as_entire_binding())],
            );
            op.push(&pipeline, bg, [groups_x as u32, n_tokens as u32, 1]);
        }
        scope.check(&format!("binding {}", op.name)).await?;
        Ok(op)
    }
}
