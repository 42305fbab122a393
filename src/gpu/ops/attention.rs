//! RoPE (`shaders/rope.wgsl`), the KV cache, and grouped-query attention
//! (`shaders/attention.wgsl`).

use super::{check_len, u32_of};
use crate::gpu::kernels::Shader;
use crate::gpu::{ensure, Gpu, GpuBuffer, GpuError, GpuTensor, Kernels, Op, StepUniform};
use crate::quant::GgmlType;

/// WGSL `rope.wgsl::Params`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RopeParams {
    n_heads: u32,
    head_dim: u32,
    half_rope: u32,
    n_tokens: u32,
}

/// WGSL `attention.wgsl::Params`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct AttnParams {
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    ctx: u32,
    n_tokens: u32,
    scale: f32,
    chunk: u32,
    n_chunks: u32,
}

/// WGSL `attention.wgsl::MAX_HEAD_DIM`.
pub const MAX_HEAD_DIM: u64 = 256;
/// Attention splits the cache into at most this many chunks of at least
/// [`MIN_ATTENTION_CHUNK`] positions, each its own workgroup per head.
pub const MAX_ATTENTION_CHUNKS: u64 = 64;
pub const MIN_ATTENTION_CHUNK: u64 = 256;

/// (positions per chunk, chunks) for a cache of `ctx` positions.
fn attention_chunks(ctx: u64) -> (u64, u64) {
    let chunk = ctx.div_ceil(MAX_ATTENTION_CHUNKS).next_multiple_of(64).max(MIN_ATTENTION_CHUNK);
    (chunk, ctx.div_ceil(chunk).max(1))
}

/// The frequency tables one model's RoPE ops share: `inv_freq[i] = base^(-2i / rope_dim)`
/// (computed here in f64), and the divisors from `rope_freqs.weight` or ones.
pub struct Rope {
    pub head_dim: u64,
    pub rope_dim: u64,
    /// `[rope_dim / 2]` f32.
    inv_freq: wgpu::Buffer,
    /// `[rope_dim / 2]` f32.
    freq_div: wgpu::Buffer,
}

impl Rope {
    pub fn new(k: &Kernels, head_dim: u64, rope_dim: u64, base: f32, freqs: Option<&GpuTensor>) -> Result<Self, GpuError> {
        const OP: &str = "rope";
        ensure(rope_dim >= 2 && rope_dim.is_multiple_of(2) && rope_dim <= head_dim, OP, || {
            format!("rope_dim {rope_dim} must be even, at least 2 and at most head_dim {head_dim}")
        })?;
        let half = rope_dim / 2;
        let inv: Vec<f32> = (0..half).map(|i| (base as f64).powf(-2.0 * i as f64 / rope_dim as f64) as f32).collect();
        let freq_div = match freqs {
            Some(t) => {
                if t.ty != GgmlType::F32 {
                    return Err(GpuError::UnsupportedType { op: OP, tensor: t.name.clone(), ty: t.ty });
                }
                ensure(t.elements() == half && t.parts.len() == 1, OP, || format!("{:?} has {} values, expected {half}", t.name, t.elements()))?;
                t.parts[0].buffer.clone()
            }
            None => k.storage_f32("rope ones", &vec![1.0; half as usize]),
        };
        Ok(Self { head_dim, rope_dim, inv_freq: k.storage_f32("rope inv_freq", &inv), freq_div })
    }
}

/// Keys and values of every layer: per layer one K and one V buffer of
/// `[n_kv_heads][ctx][head_dim]` f32 (a head's keys are contiguous).
pub struct KvCache {
    pub n_kv_heads: u64,
    pub head_dim: u64,
    pub ctx: u64,
    /// (K, V) per layer.
    pub layers: Vec<(GpuBuffer, GpuBuffer)>,
}

impl KvCache {
    pub fn new(gpu: &Gpu, n_layers: usize, n_kv_heads: u64, head_dim: u64, ctx: u64) -> Result<Self, GpuError> {
        let len = n_kv_heads * ctx * head_dim;
        if len * 4 > gpu.binding_limit() {
            return Err(GpuError::TooLarge {
                what: format!("the KV cache of one layer at context {ctx} (use a shorter context)"),
                bytes: len * 4,
                limit: gpu.binding_limit(),
            });
        }
        let layers = (0..n_layers)
            .map(|l| Ok((GpuBuffer::new(gpu, len, &format!("k cache {l}"))?, GpuBuffer::new(gpu, len, &format!("v cache {l}"))?)))
            .collect::<Result<_, GpuError>>()?;
        Ok(Self { n_kv_heads, head_dim, ctx, layers })
    }

    fn layer(&self, op: &'static str, layer: usize) -> Result<&(GpuBuffer, GpuBuffer), GpuError> {
        self.layers.get(layer).ok_or_else(|| GpuError::Shape { op, message: format!("layer {layer} of {}", self.layers.len()) })
    }
}

impl Kernels {
    /// Rotate x in place: `[n_tokens][n_heads][head_dim]`, token t at position `step.pos + t`.
    pub async fn rope(&self, rope: &Rope, x: &GpuBuffer, n_heads: u64, step: &StepUniform, n_tokens: u64) -> Result<Op, GpuError> {
        const OP: &str = "rope";
        check_len(OP, "x", x, n_tokens * n_heads * rope.head_dim)?;
        let threads = n_tokens * n_heads * (rope.rope_dim / 2);
        u32_of(OP, "threads", threads)?;
        let pipeline = self.pipeline(Shader::Rope, None, "rope").await?;
        let scope = self.gpu.scope();
        let params = RopeParams {
            n_heads: n_heads as u32,
            head_dim: rope.head_dim as u32,
            half_rope: (rope.rope_dim / 2) as u32,
            n_tokens: n_tokens as u32,
        };
        let uniform = self.uniform("rope params", &params);
        let mut op = Op::new(format!("rope {}", x.label));
        let bg = self.bind(
            &op.name,
            &pipeline,
            &[
                (0, x.binding()),
                (1, rope.inv_freq.as_entire_binding()),
                (2, rope.freq_div.as_entire_binding()),
                (3, uniform.as_entire_binding()),
                (4, step.buffer.as_entire_binding()),
            ],
        );
        let (gx, gy) = self.gpu.grid(threads.div_ceil(64), OP)?;
        op.push(&pipeline, bg, [gx, gy, 1]);
        scope.check("binding rope").await?;
        Ok(op)
    }

    /// Store k and v (`[n_tokens][n_kv_heads][head_dim]`, after RoPE) of `layer` at
    /// positions `step.pos ..`; positions past the cache are dropped (the caller stops first).
    pub async fn kv_append(&self, k: &GpuBuffer, v: &GpuBuffer, cache: &KvCache, layer: usize, step: &StepUniform, n_tokens: u64) -> Result<Op, GpuError> {
        const OP: &str = "kv_append";
        let (kc, vc) = cache.layer(OP, layer)?;
        let n = n_tokens * cache.n_kv_heads * cache.head_dim;
        ensure(cache.head_dim.is_multiple_of(4), OP, || format!("head_dim {} is not a multiple of 4", cache.head_dim))?;
        check_len(OP, "k", k, n)?;
        check_len(OP, "v", v, n)?;
        u32_of(OP, "values", n)?;
        let pipeline = self.pipeline(Shader::Attention, None, "kv_append").await?;
        let scope = self.gpu.scope();
        let uniform = self.uniform("kv_append params", &attn_params(cache, cache.n_kv_heads, n_tokens)?);
        let mut op = Op::new(format!("kv_append {layer}"));
        let bg = self.bind(
            &op.name,
            &pipeline,
            &[
                (1, k.binding()),
                (2, v.binding()),
                (3, kc.binding()),
                (4, vc.binding()),
                (6, uniform.as_entire_binding()),
                (7, step.buffer.as_entire_binding()),
            ],
        );
        let (gx, gy) = self.gpu.grid((n / 4).div_ceil(64), OP)?;
        op.push(&pipeline, bg, [gx, gy, 1]);
        scope.check("binding kv_append").await?;
        Ok(op)
    }

    /// Grouped-query attention of q (`[n_tokens][n_heads][head_dim]`) over the cached
    /// positions `0 ..= step.pos + t` into out (same shape); query head h reads kv head
    /// `h / (n_heads / n_kv_heads)`.
    #[allow(clippy::too_many_arguments)]
    pub async fn attention(
        &self,
        q: &GpuBuffer,
        cache: &KvCache,
        layer: usize,
        out: &GpuBuffer,
        n_heads: u64,
        step: &StepUniform,
        n_tokens: u64,
    ) -> Result<Op, GpuError> {
        const OP: &str = "attention";
        let (kc, vc) = cache.layer(OP, layer)?;
        ensure(n_heads > 0 && n_heads.is_multiple_of(cache.n_kv_heads), OP, || format!("{n_heads} heads do not share {} kv heads evenly", cache.n_kv_heads))?;
        ensure(cache.head_dim <= MAX_HEAD_DIM && cache.head_dim.is_multiple_of(4), OP, || {
            format!("head_dim {} must be a multiple of 4, at most {MAX_HEAD_DIM}", cache.head_dim)
        })?;
        let max = self.gpu.max_workgroups_per_dim() as u64;
        ensure(n_heads <= max && n_tokens <= max, OP, || format!("{n_heads} heads x {n_tokens} tokens exceed the dispatch limit"))?;
        let n = n_tokens * n_heads * cache.head_dim;
        check_len(OP, "q", q, n)?;
        check_len(OP, "out", out, n)?;
        u32_of(OP, "values", n)?;
        let (_, n_chunks) = attention_chunks(cache.ctx);
        let scratch_bytes = n_tokens * n_heads * n_chunks * (2 + cache.head_dim) * 4;
        if scratch_bytes > self.gpu.binding_limit() {
            return Err(GpuError::TooLarge { what: format!("attention partials for {n_tokens} tokens"), bytes: scratch_bytes, limit: self.gpu.binding_limit() });
        }
        let part = self.pipeline(Shader::Attention, None, "attention_part").await?;
        let combine = self.pipeline(Shader::Attention, None, "attention_combine").await?;
        let scope = self.gpu.scope();
        let uniform = self.uniform("attention params", &attn_params(cache, n_heads, n_tokens)?);
        let scratch = self.scratch(scratch_bytes);
        let mut op = Op::new(format!("attention {layer}"));
        let bg = self.bind(
            &op.name,
            &part,
            &[
                (0, q.binding()),
                (3, kc.binding()),
                (4, vc.binding()),
                (6, uniform.as_entire_binding()),
                (7, step.buffer.as_entire_binding()),
                (8, scratch.as_entire_binding()),
            ],
        );
        op.push(&part, bg, [n_heads as u32, n_chunks as u32, n_tokens as u32]);
        let bg = self.bind(
            &op.name,
            &combine,
            &[(5, out.binding()), (6, uniform.as_entire_binding()), (7, step.buffer.as_entire_binding()), (8, scratch.as_entire_binding())],
        );
        op.push(&combine, bg, [n_heads as u32, n_tokens as u32, 1]);
        scope.check("binding attention").await?;
        Ok(op)
    }
}

fn attn_params(cache: &KvCache, n_heads: u64, n_tokens: u64) -> Result<AttnParams, GpuError> {
    Ok(AttnParams {
        n_heads: u32_of("attention", "heads", n_heads)?,
        n_kv_heads: u32_of("attention", "kv heads", cache.n_kv_heads)?,
        head_dim: u32_of("attention", "head_dim", cache.head_dim)?,
        ctx: u32_of("attention", "context", cache.ctx)?,
        n_tokens: u32_of("attention", "tokens", n_tokens)?,
        scale: 1.0 / (cache.head_dim as f32).sqrt(),
        chunk: attention_chunks(cache.ctx).0 as u32,
        n_chunks: attention_chunks(cache.ctx).1 as u32,
    })
}
