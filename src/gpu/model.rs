//! The whole model on the GPU: weights, KV cache, activation buffers and the recorded op
//! graphs, built once at load. Running a token is then: write the 16-byte step uniform, record
//! the prepared ops into one compute pass, copy a few bytes out, submit once.
//!
//! Two kinds of graph share the weights, cache and buffers:
//! - the decode graph (one token): embed the id in `next_token` → 32 blocks → norm → output
//!   head → sample into `next_token`, so a sampled id feeds the next step without leaving the GPU;
//! - prefill graphs (a batch of `n` prompt tokens from `ids`): the same blocks with matrix-matrix
//!   kernels, without the output head. A prompt of L tokens runs L-1 tokens through the largest
//!   batch graphs that fit and its last token through the decode graph, which gives its logits.

use super::ops::attention::Rope;
use super::{GpuBuffer, GpuError, GpuWeights, Kernels, KvCache, Op, Sampler, Step, StepUniform};
use crate::sampling::SamplingParams;
use crate::gguf::GgufFile;
use crate::model::config::{LayerNames, LlamaConfig, OUTPUT, OUTPUT_NORM, ROPE_FREQS, TOKEN_EMBD};

/// Prompt tokens per prefill graph, largest first; each size costs one set of bind groups. The
/// 1-token prefill graph differs from the decode graph in having no output head and no sampler,
/// so prompt tokens never touch the sampler's state.
pub const PREFILL_BATCHES: [u64; 4] = [64, 16, 4, 1];

/// Capacity of the GPU's ring of recent tokens: the most the repetition penalty can look back
/// (`repeat_last_n` is capped here; the default is 64).
pub const REPEAT_WINDOW: u64 = 256;

/// Activations for up to `n` tokens at once (`[n][width]` each).
struct Activations {
    x: GpuBuffer,    // [n][dim] residual stream
    xb: GpuBuffer,   // [n][dim] normed input, then block outputs
    q: GpuBuffer,    // [n][n_heads][head_dim]
    k: GpuBuffer,    // [n][n_kv_heads][head_dim]
    v: GpuBuffer,    // [n][n_kv_heads][head_dim]
    att: GpuBuffer,  // [n][n_heads][head_dim] attention output
    gate: GpuBuffer, // [n][ffn_dim]
    up: GpuBuffer,   // [n][ffn_dim]
}

/// One prepared graph and the number of tokens it runs.
struct Graph {
    n_tokens: u64,
    ops: Vec<Op>,
}

pub struct GpuModel {
    pub kernels: Kernels,
    pub config: LlamaConfig,
    pub weights: GpuWeights,
    cache: KvCache,
    step: StepUniform,
    sampler: Sampler,
    sample_config: SamplingParams,
    /// `[max batch]` prompt token ids for prefill graphs.
    ids: GpuBuffer,
    /// `[1]` the token the decode graph embeds, overwritten by the token it samples.
    next_token: GpuBuffer,
    logits: GpuBuffer, // [vocab]
    _acts: Activations,
    decode: Graph,
    prefill: Vec<Graph>,
    /// MAP_READ copies of `next_token` (4 bytes) and `logits`.
    token_readback: wgpu::Buffer,
    logits_readback: wgpu::Buffer,
    /// Tokens in the cache.
    pos: u64,
    /// Sampler draws so far (the random stream's counter).
    rand_step: u32,
}

/// What one step should read back.
#[derive(Clone, Copy, PartialEq)]
enum Readback {
    Token,
    Logits,
}

impl GpuModel {
    /// Build everything around uploaded weights (`weights.finish()` done). `context` is the KV
    /// cache length in tokens.
    pub async fn new(kernels: Kernels, file: &GgufFile, weights: GpuWeights, context: u64) -> Result<Self, GpuError> {
        let config = LlamaConfig::from_gguf(file).map_err(|e| GpuError::Shape { op: "model", message: e.to_string() })?;
        let c = &config;
        let gpu = kernels.gpu.clone();
        let (dim, kv_dim, ffn, vocab) = (c.dim as u64, c.kv_dim() as u64, c.ffn_dim as u64, c.vocab_size as u64);
        let n_max = PREFILL_BATCHES[0];
        let buf = |len: u64, label: &str| GpuBuffer::new(&gpu, len, label);
        let acts = Activations {
            x: buf(n_max * dim, "x")?,
            xb: buf(n_max * dim, "xb")?,
            q: buf(n_max * dim, "q")?,
            k: buf(n_max * kv_dim, "k")?,
            v: buf(n_max * kv_dim, "v")?,
            att: buf(n_max * dim, "att")?,
            gate: buf(n_max * ffn, "gate")?,
            up: buf(n_max * ffn, "up")?,
        };
        let cache = KvCache::new(&gpu, c.n_layers, c.n_kv_heads as u64, c.head_dim as u64, context)?;
        let step = StepUniform::new(&gpu);
        let sample_config = SamplingParams::greedy();
        let sampler = Sampler::new(&gpu, vocab, REPEAT_WINDOW, &sample_config)?;
        let ids = GpuBuffer::new(&gpu, n_max, "prompt ids")?;
        let next_token = GpuBuffer::new(&gpu, 1, "next token")?;
        let logits = buf(vocab, "logits")?;
        let readback = |size: u64, label: &str| {
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        };
        let token_readback = readback(4, "token readback");
        let logits_readback = readback(vocab * 4, "logits readback");

        let rope_freqs = if c.has_rope_freqs { Some(weights.get(ROPE_FREQS)?) } else { None };
        let rope = Rope::new(&kernels, c.head_dim as u64, c.rope_dim as u64, c.rope_base, rope_freqs)?;
        let parts = GraphParts { k: &kernels, c, w: &weights, a: &acts, cache: &cache, step: &step, rope: &rope };
        let mut decode_ops = parts.blocks(&next_token, 1).await?;
        let head = match c.tied_output {
            true => weights.get(TOKEN_EMBD)?,
            false => weights.get(OUTPUT)?,
        };
        decode_ops.push(kernels.rms_norm(&acts.x, weights.get(OUTPUT_NORM)?, &acts.xb, dim, 1, c.rms_eps).await?);
        decode_ops.push(kernels.matvec(head, &acts.xb, &logits).await?);
        decode_ops.push(kernels.sample(&logits, &sampler, &step, &next_token).await?);
        let mut prefill = Vec::new();
        for &n in &PREFILL_BATCHES {
            if n <= context {
                prefill.push(Graph { n_tokens: n, ops: parts.blocks(&ids, n).await? });
            }
        }
        Ok(Self {
            kernels,
            config,
            weights,
            cache,
            step,
            sampler,
            sample_config,
            ids,
            next_token,
            logits,
            _acts: acts,
            decode: Graph { n_tokens: 1, ops: decode_ops },
            prefill,
            token_readback,
            logits_readback,
            pos: 0,
            rand_step: 0,
        })
    }

    pub fn context_len(&self) -> u64 {
        self.cache.ctx
    }

    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Forget cached positions from `len` on (the cache contents past it are simply overwritten).
    pub fn rewind(&mut self, len: u64) {
        self.pos = self.pos.min(len);
    }

    /// Compute passes and dispatches one decode step records (for `hearth bench`).
    pub fn dispatches_per_token(&self) -> usize {
        self.decode.ops.iter().map(Op::dispatch_count).sum()
    }

    /// Use these sampling settings and this history (prompt and earlier replies) for the
    /// repetition penalty from the next step on.
    pub fn set_sampling(&mut self, config: &SamplingParams, history: &[u32]) -> Result<(), GpuError> {
        if *config != self.sample_config {
            self.sampler.set_config(&self.kernels.gpu, config);
            self.sample_config = config.clone();
        }
        self.sampler.set_recent(&self.kernels.gpu, history)
    }

    /// Run `tokens` at the next positions (all but the last through prefill graphs) and return
    /// the token the sampler picked after the last one.
    pub async fn next_token(&mut self, tokens: &[u32]) -> Result<u32, GpuError> {
        let bytes = self.run(tokens, Readback::Token).await?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// Run `tokens` and return the logits after the last one (`[vocab]`).
    pub async fn forward_last(&mut self, tokens: &[u32]) -> Result<Vec<f32>, GpuError> {
        let bytes = self.run(tokens, Readback::Logits).await?;
        Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }

    async fn run(&mut self, tokens: &[u32], readback: Readback) -> Result<Vec<u8>, GpuError> {
        let Some((&last, prompt)) = tokens.split_last() else {
            return Err(GpuError::Shape { op: "run", message: "no tokens to run".into() });
        };
        let end = self.pos + tokens.len() as u64;
        if end > self.cache.ctx {
            return Err(GpuError::Shape { op: "run", message: format!("{end} tokens do not fit the {}-token context", self.cache.ctx) });
        }
        let gpu = self.kernels.gpu.clone();
        // Prefill: the largest batches that fit, in order.
        let mut rest = prompt;
        while !rest.is_empty() {
            let graph = self.prefill.iter().find(|g| g.n_tokens as usize <= rest.len());
            let graph = graph.ok_or_else(|| GpuError::Shape { op: "prefill", message: "no prefill graph".into() })?;
            let (n, ops) = (graph.n_tokens as usize, &graph.ops);
            self.ids.write(&gpu, 0, bytemuck::cast_slice(&rest[..n]))?;
            self.step.write(&gpu, Step { pos: self.pos as u32, rand_step: self.rand_step, _pad: [0; 2] });
            submit(&gpu, ops, None);
            self.pos += n as u64;
            rest = &rest[n..];
        }
        let (source, target, len) = match readback {
            Readback::Token => (&self.next_token.buffer, &self.token_readback, 4),
            Readback::Logits => (&self.logits.buffer, &self.logits_readback, self.logits.bytes()),
        };
        let scope = gpu.scope();
        self.next_token.write(&gpu, 0, &last.to_le_bytes())?;
        self.step.write(&gpu, Step { pos: self.pos as u32, rand_step: self.rand_step, _pad: [0; 2] });
        submit(&gpu, &self.decode.ops, Some((source, target, len)));
        self.pos += 1;
        self.rand_step = self.rand_step.wrapping_add(1);
        scope.check("running a decode step").await?;
        read_mapped(&gpu, target, len).await
    }
}

/// Record `ops` into one compute pass, then the optional copy, and submit once.
fn submit(gpu: &super::Gpu, ops: &[Op], copy: Option<(&wgpu::Buffer, &wgpu::Buffer, u64)>) {
    let mut enc = gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("hearth step") });
    {
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("hearth step"), timestamp_writes: None });
        for op in ops {
            op.record(&mut pass);
        }
    }
    if let Some((src, dst, len)) = copy {
        enc.copy_buffer_to_buffer(src, 0, dst, 0, len);
    }
    gpu.queue.submit([enc.finish()]);
}

/// Map `buffer` (MAP_READ), copy out its first `len` bytes, unmap.
async fn read_mapped(gpu: &super::Gpu, buffer: &wgpu::Buffer, len: u64) -> Result<Vec<u8>, GpuError> {
    let (tx, rx) = super::device::oneshot();
    buffer.slice(..len).map_async(wgpu::MapMode::Read, move |r| tx.send(r));
    gpu.wait_idle()?;
    rx.await.map_err(|e| GpuError::Readback(e.to_string()))?;
    let bytes = buffer.slice(..len).get_mapped_range().map_err(|e| GpuError::Readback(e.to_string()))?.to_vec();
    buffer.unmap();
    Ok(bytes)
}

/// Everything the block ops of a graph bind to.
struct GraphParts<'a> {
    k: &'a Kernels,
    c: &'a LlamaConfig,
    w: &'a GpuWeights,
    a: &'a Activations,
    cache: &'a KvCache,
    step: &'a StepUniform,
    rope: &'a Rope,
}

impl GraphParts<'_> {
    /// Embedding of `n` ids from `ids`, then every transformer block, for `n` tokens.
    async fn blocks(&self, ids: &GpuBuffer, n: u64) -> Result<Vec<Op>, GpuError> {
        let (k, c, w, a) = (self.k, self.c, self.w, self.a);
        let (dim, ffn) = (c.dim as u64, c.ffn_dim as u64);
        let (heads, kv_heads) = (c.n_heads as u64, c.n_kv_heads as u64);
        let mm = |wt, x, y| async move {
            match n {
                1 => k.matvec(wt, x, y).await,
                _ => k.matmul(wt, x, y, n).await,
            }
        };
        let mut ops = vec![k.embed(w.get(TOKEN_EMBD)?, ids, 0, n, &a.x).await?];
        for layer in 0..c.n_layers {
            let t = LayerNames::new(layer);
            // Attention: x += wo(attention(rope(wq xn), rope(wk xn), wv xn)).
            ops.push(k.rms_norm(&a.x, w.get(&t.attn_norm)?, &a.xb, dim, n, c.rms_eps).await?);
            ops.push(mm(w.get(&t.wq)?, &a.xb, &a.q).await?);
            ops.push(mm(w.get(&t.wk)?, &a.xb, &a.k).await?);
            ops.push(mm(w.get(&t.wv)?, &a.xb, &a.v).await?);
            ops.push(k.rope(self.rope, &a.q, heads, self.step, n).await?);
            ops.push(k.rope(self.rope, &a.k, kv_heads, self.step, n).await?);
            ops.push(k.kv_append(&a.k, &a.v, self.cache, layer, self.step, n).await?);
            ops.push(k.attention(&a.q, self.cache, layer, &a.att, heads, self.step, n).await?);
            ops.push(mm(w.get(&t.wo)?, &a.att, &a.xb).await?);
            ops.push(k.add(&a.x, &a.xb, n * dim).await?);
            // Feed-forward: x += w_down(silu(w_gate xn) * w_up xn).
            ops.push(k.rms_norm(&a.x, w.get(&t.ffn_norm)?, &a.xb, dim, n, c.rms_eps).await?);
            ops.push(mm(w.get(&t.w_gate)?, &a.xb, &a.gate).await?);
            ops.push(mm(w.get(&t.w_up)?, &a.xb, &a.up).await?);
            ops.push(k.swiglu(&a.gate, &a.up, n * ffn).await?);
            ops.push(mm(w.get(&t.w_down)?, &a.gate, &a.xb).await?);
            ops.push(k.add(&a.x, &a.xb, n * dim).await?);
        }
        Ok(ops)
    }
}
