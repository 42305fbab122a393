//! RMSNorm (`shaders/norm.wgsl`), residual add and SwiGLU (`shaders/elementwise.wgsl`).

use super::{check_len, u32_of};
use crate::gpu::kernels::Shader;
use crate::gpu::{ensure, GpuBuffer, GpuError, GpuTensor, Kernels, Op};
use crate::quant::GgmlType;

/// WGSL `norm.wgsl::Params`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct NormParams {
    n: u32,
    rows: u32,
    eps: f32,
    _pad: u32,
}

/// WGSL `elementwise.wgsl::Params`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct EwParams {
    n: u32,
    _pad: [u32; 3],
}

impl Kernels {
    /// `y[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * w` for r in 0..rows.
    /// x, y: `[rows][n]`; w: F32 `[n]` (a norm weight from the file).
    pub async fn rms_norm(&self, x: &GpuBuffer, w: &GpuTensor, y: &GpuBuffer, n: u64, rows: u64, eps: f32) -> Result<Op, GpuError> {
        const OP: &str = "rms_norm";
        if w.ty != GgmlType::F32 {
            return Err(GpuError::UnsupportedType { op: OP, tensor: w.name.clone(), ty: w.ty });
        }
        ensure(w.elements() == n && w.parts.len() == 1, OP, || format!("weight {:?} has {} values, expected {n}", w.name, w.elements()))?;
        check_len(OP, "x", x, n * rows)?;
        check_len(OP, "y", y, n * rows)?;
        u32_of(OP, "rows x n", n * rows)?;
        let pipeline = self.pipeline(Shader::Norm, None, "rms_norm").await?;
        let scope = self.gpu.scope();
        let uniform = self.uniform("rms_norm params", &NormParams { n: n as u32, rows: rows as u32, eps, _pad: 0 });
        let mut op = Op::new(format!("rms_norm {}", w.name));
        let bg = self.bind(
            &op.name,
            &pipeline,
            &[(0, x.binding()), (1, w.parts[0].buffer.as_entire_binding()), (2, y.binding()), (3, uniform.as_entire_binding())],
        );
        let (gx, gy) = self.gpu.grid(rows, OP)?;
        op.push(&pipeline, bg, [gx, gy, 1]);
        scope.check("binding rms_norm").await?;
        Ok(op)
    }

    /// `a[i] += b[i]` for i in 0..n (the residual connection).
    pub async fn add(&self, a: &GpuBuffer, b: &GpuBuffer, n: u64) -> Result<Op, GpuError> {
        self.elementwise("add", a, b, n).await
    }

    /// `gate[i] = silu(gate[i]) * up[i]` for i in 0..n.
    pub async fn swiglu(&self, gate: &GpuBuffer, up: &GpuBuffer, n: u64) -> Result<Op, GpuError> {
        self.elementwise("swiglu", gate, up, n).await
    }

    async fn elementwise(&self, entry: &'static str, a: &GpuBuffer, b: &GpuBuffer, n: u64) -> Result<Op, GpuError> {
        check_len(entry, "a", a, n)?;
        check_len(entry, "b", b, n)?;
        let pipeline = self.pipeline(Shader::Elementwise, None, entry).await?;
        let scope = self.gpu.scope();
        let uniform = self.uniform(&format!("{entry} params"), &EwParams { n: u32_of(entry, "n", n)?, _pad: [0; 3] });
        let mut op = Op::new(format!("{entry} {} {}", a.label, b.label));
        let bg = self.bind(&op.name, &pipeline, &[(0, a.binding()), (1, b.binding()), (2, uniform.as_entire_binding())]);
        let (gx, gy) = self.gpu.grid(n.div_ceil(256), entry)?;
        op.push(&pipeline, bg, [gx, gy, 1]);
        scope.check(&format!("binding {entry}")).await?;
        Ok(op)
    }
}
