//! Choosing the next token on the GPU (`shaders/sample.wgsl`). The algorithm is the CPU's
//! ([`crate::sampling`], llama.cpp's chain: penalty → top-k → top-p → min-p at temperature 1 →
//! temperature → draw); the shader documents it step by step.

use super::check_len;
use crate::gpu::kernels::Shader;
use crate::gpu::{ensure, Gpu, GpuBuffer, GpuError, Kernels, Op, StepUniform};
use crate::sampling::SamplingParams;

/// WGSL `sample.wgsl::Params`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SampleParams {
    vocab: u32,
    top_k: u32,
    window: u32,
    seed: u32,
    temperature: f32,
    top_p: f32,
    min_p: f32,
    rep_penalty: f32,
    last_n: u32,
    _pad: [u32; 3],
}

/// The sampler's GPU state: its settings (a uniform, rewritten when they change) and the
/// ring of recent tokens that the repetition penalty looks at (the kernel pushes each token
/// it picks; the CPU fills it with the prompt).
pub struct Sampler {
    pub vocab: u64,
    pub window: u64,
    params: wgpu::Buffer,
    /// `[1 + window]` u32: `[0]` = tokens pushed so far, then the ring (token i at `1 + i % window`).
    pub recent: GpuBuffer,
}

impl Sampler {
    pub fn new(gpu: &Gpu, vocab: u64, window: u64, config: &SamplingParams) -> Result<Self, GpuError> {
        ensure(vocab >= 1 && vocab <= u32::MAX as u64 && window < u32::MAX as u64, "sampler", || format!("vocab {vocab}, window {window}"))?;
        let params = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("sampler params"),
            size: std::mem::size_of::<SampleParams>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let s = Self { vocab, window, params, recent: GpuBuffer::new(gpu, 1 + window.max(1), "recent tokens")? };
        s.set_config(gpu, config);
        Ok(s)
    }

    /// Use the CPU sampler's settings (the same algorithm, see `crate::sampling`). The penalty
    /// window is capped at this sampler's ring; the 64-bit seed is folded to the shader's 32.
    pub fn set_config(&self, gpu: &Gpu, c: &SamplingParams) {
        let p = SampleParams {
            vocab: self.vocab as u32,
            top_k: c.top_k.min(u32::MAX as usize) as u32,
            window: self.window as u32,
            seed: (c.seed ^ (c.seed >> 32)) as u32,
            temperature: c.temperature,
            top_p: c.top_p,
            min_p: c.min_p,
            rep_penalty: c.repeat_penalty,
            last_n: c.repeat_last_n.min(self.window as usize) as u32,
            _pad: [0; 3],
        };
        gpu.queue.write_buffer(&self.params, 0, bytemuck::bytes_of(&p));
    }

    /// Replace the recent-token ring with the last `window` of `history` (e.g. the prompt).
    pub fn set_recent(&self, gpu: &Gpu, history: &[u32]) -> Result<(), GpuError> {
        let w = self.window.max(1) as usize;
        let mut ring = vec![0u32; 1 + w];
        ring[0] = history.len() as u32;
        let start = history.len().saturating_sub(w);
        for (i, &t) in history.iter().enumerate().skip(start) {
            ring[1 + i % w] = t;
        }
        self.recent.write(gpu, 0, bytemuck::cast_slice(&ring))
    }
}

impl Kernels {
    /// `out[0] = argmax(logits[0..vocab])` (lowest index on ties). out: u32 `[1..]`.
    pub async fn argmax(&self, logits: &GpuBuffer, vocab: u64, out: &GpuBuffer) -> Result<Op, GpuError> {
        const OP: &str = "argmax";
        ensure(vocab >= 1 && vocab <= u32::MAX as u64, OP, || format!("vocab {vocab}"))?;
        check_len(OP, "logits", logits, vocab)?;
        check_len(OP, "out", out, 1)?;
        let pipeline = self.pipeline(Shader::Sample, None, "argmax").await?;
        let scope = self.gpu.scope();
        let params = SampleParams { vocab: vocab as u32, ..bytemuck::Zeroable::zeroed() };
        let uniform = self.uniform("argmax params", &params);
        let mut op = Op::new("argmax");
        let bg = self.bind("argmax", &pipeline, &[(0, logits.binding()), (2, out.binding()), (3, uniform.as_entire_binding())]);
        op.push(&pipeline, bg, [1, 1, 1]);
        scope.check("binding argmax").await?;
        Ok(op)
    }

    /// Pick the next token from `logits` (`[vocab]`, penalised in place) with the sampler's
    /// settings and `step.rand_step`, into `out[0]`, and push it into the recent ring.
    pub async fn sample(&self, logits: &GpuBuffer, sampler: &Sampler, step: &StepUniform, out: &GpuBuffer) -> Result<Op, GpuError> {
        const OP: &str = "sample";
        check_len(OP, "logits", logits, sampler.vocab)?;
        check_len(OP, "out", out, 1)?;
        let pipeline = self.pipeline(Shader::Sample, None, "sample").await?;
        let scope = self.gpu.scope();
        let mut op = Op::new("sample");
        let bg = self.bind(
            "sample",
            &pipeline,
            &[
                (0, logits.binding()),
                (1, sampler.recent.binding()),
                (2, out.binding()),
                (3, sampler.params.as_entire_binding()),
                (4, step.buffer.as_entire_binding()),
            ],
        );
        op.push(&pipeline, bg, [1, 1, 1]);
        scope.check("binding sample").await?;
        Ok(op)
    }
}
