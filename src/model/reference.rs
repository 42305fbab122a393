//! The CPU reference forward pass: plain f32 Llama, written to be read, not to be fast.
//!
//! This is the oracle every GPU kernel and the whole GPU engine are tested against, and what
//! `--device cpu` runs. Weights stay quantized in memory; each matrix row is dequantized with
//! `quant::dequantize` (bit-exact with ggml) right before its dot products, so the function
//! computed is exactly "the quantized weights in f32 arithmetic" — what the fixtures' llama.cpp
//! references (made from an F32-dequantized copy of each model) compute too.

use super::config::{LayerNames, LlamaConfig, ModelError, OUTPUT, OUTPUT_NORM, ROPE_FREQS, TOKEN_EMBD};
use super::loader::{self, LoadError, MemorySink};
use crate::gguf::GgufFile;
use crate::quant::{self, GgmlType};
use std::path::Path;

/// A quantized weight matrix: `rows` rows of `cols` elements, row-major as in the file.
pub struct Matrix {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<u8>,
}

impl Matrix {
    fn row_bytes(&self) -> usize {
        self.data.len() / self.rows
    }

    /// Dequantize row `r` into `out` (`cols` floats).
    pub fn row(&self, r: usize, out: &mut [f32]) {
        let rb = self.row_bytes();
        quant::dequantize(self.ty, &self.data[r * rb..(r + 1) * rb], out);
    }

    /// `y[t][r] = sum_c W[r][c] * x[t][c]` for `t` in 0..T: x is T x cols, y is T x rows.
    /// Each row is dequantized once for all T inputs (prefill reads every weight once).
    pub fn matmul(&self, x: &[f32], y: &mut [f32]) {
        let t_count = x.len() / self.cols;
        assert_eq!(x.len(), t_count * self.cols);
        assert_eq!(y.len(), t_count * self.rows);
        // Work on row bands in parallel; results are written transposed afterwards.
        let mut yt = vec![0f32; self.rows * t_count]; // rows x T
        let threads = parallelism(self.rows * self.cols);
        let band = self.rows.div_ceil(threads);
        let run = |first_row: usize, out: &mut [f32]| {
            let mut w = vec![0f32; self.cols];
            for (i, out_row) in out.chunks_mut(t_count).enumerate() {
                self.row(first_row + i, &mut w);
                for (t, o) in out_row.iter_mut().enumerate() {
                    *o = dot(&w, &x[t * self.cols..(t + 1) * self.cols]);
                }
            }
        };
        if threads == 1 {
            run(0, &mut yt);
        } else {
            std::thread::scope(|s| {
                for (b, chunk) in yt.chunks_mut(band * t_count).enumerate() {
                    let run = &run;
                    s.spawn(move || run(b * band, chunk));
                }
            });
        }
        for r in 0..self.rows {
            for t in 0..t_count {
                y[t * self.rows + r] = yt[r * t_count + t];
            }
        }
    }
}

/// Threads worth using for `work` multiply-adds (threads cost ~tens of µs to start).
fn parallelism(work: usize) -> usize {
    if cfg!(target_arch = "wasm32") || work < (1 << 20) {
        return 1;
    }
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(8)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub struct Layer {
    pub attn_norm: Vec<f32>, // dim
    pub wq: Matrix,          // dim -> dim
    pub wk: Matrix,          // dim -> kv_dim
    pub wv: Matrix,          // dim -> kv_dim
    pub wo: Matrix,          // dim -> dim
    pub ffn_norm: Vec<f32>,  // dim
    pub w_gate: Matrix,      // dim -> ffn_dim
    pub w_up: Matrix,        // dim -> ffn_dim
    pub w_down: Matrix,      // ffn_dim -> dim
}

pub struct ReferenceModel {
    pub config: LlamaConfig,
    pub token_embd: Matrix, // vocab rows of dim
    pub layers: Vec<Layer>,
    pub output_norm: Vec<f32>, // dim
    /// None when tied to `token_embd`.
    pub output: Option<Matrix>, // vocab rows of dim
    /// Per-pair frequency divisors (rope_dim / 2), Llama 3.1.
    pub rope_freqs: Option<Vec<f32>>,
}

/// Keys and values of every past position: `k[layer]` is positions x kv_dim.
pub struct KvCache {
    pub k: Vec<Vec<f32>>,
    pub v: Vec<Vec<f32>>,
    pub len: usize,
}

impl KvCache {
    pub fn new(config: &LlamaConfig) -> Self {
        Self { k: vec![Vec::new(); config.n_layers], v: vec![Vec::new(); config.n_layers], len: 0 }
    }
}

impl ReferenceModel {
    /// Load a model file through the streaming loader into memory.
    pub fn load(path: &Path) -> Result<(Self, GgufFile), ModelError> {
        let io = |e: std::io::Error| ModelError::from(LoadError::Io(format!("{}: {e}", path.display())));
        let mut f = std::fs::File::open(path).map_err(io)?;
        let len = f.metadata().map_err(io)?.len();
        let (header, head) = loader::read_header(&mut f, len)?;
        // Check the config before reading gigabytes of weights.
        LlamaConfig::from_gguf(&header)?;
        let mut sink = MemorySink::new(&header);
        let file = loader::stream_after_header(&mut f, header, head, loader::CHUNK_BYTES, &mut sink, |_, _| {})?;
        Ok((Self::from_tensors(&file, sink.tensors)?, file))
    }

    /// Build from a parsed header and every tensor's bytes (indexed like `file.tensors`).
    pub fn from_tensors(file: &GgufFile, mut bytes: Vec<Vec<u8>>) -> Result<Self, ModelError> {
        let config = LlamaConfig::from_gguf(file)?;
        let mut take = |name: &str| -> Result<Matrix, ModelError> {
            let i = file.tensors.iter().position(|t| t.name == name).ok_or_else(|| ModelError::MissingTensor(name.into()))?;
            let t = &file.tensors[i];
            Ok(Matrix { ty: t.ty, rows: t.rows() as usize, cols: t.row_len() as usize, data: std::mem::take(&mut bytes[i]) })
        };
        let vector = |m: Matrix| -> Vec<f32> {
            let mut v = vec![0f32; m.rows * m.cols];
            quant::dequantize(m.ty, &m.data, &mut v);
            v
        };
        let mut layers = Vec::with_capacity(config.n_layers);
        for l in 0..config.n_layers {
            let n = LayerNames::new(l);
            layers.push(Layer {
                attn_norm: vector(take(&n.attn_norm)?),
                wq: take(&n.wq)?,
                wk: take(&n.wk)?,
                wv: take(&n.wv)?,
                wo: take(&n.wo)?,
                ffn_norm: vector(take(&n.ffn_norm)?),
                w_gate: take(&n.w_gate)?,
                w_up: take(&n.w_up)?,
                w_down: take(&n.w_down)?,
            });
        }
        let output_norm = vector(take(OUTPUT_NORM)?);
        let rope_freqs = if config.has_rope_freqs { Some(vector(take(ROPE_FREQS)?)) } else { None };
        let output = if config.tied_output { None } else { Some(take(OUTPUT)?) };
        let token_embd = take(TOKEN_EMBD)?;
        Ok(Self { config, token_embd, layers, output_norm, output, rope_freqs })
    }

    /// Run `tokens` at positions `cache.len..`, appending to the cache; returns the logits of
    /// every position (tokens.len() x vocab).
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Vec<f32> {
        let c = &self.config;
        let (dim, kv_dim, t_count) = (c.dim, c.kv_dim(), tokens.len());
        let start = cache.len;

        // x: T x dim, the residual stream.
        let mut x = vec![0f32; t_count * dim];
        for (t, &tok) in tokens.iter().enumerate() {
            self.token_embd.row(tok as usize, &mut x[t * dim..(t + 1) * dim]);
        }
        let mut xb = vec![0f32; t_count * dim]; // normed input / attention output
        let mut q = vec![0f32; t_count * dim];
        let mut k = vec![0f32; t_count * kv_dim];
        let mut v = vec![0f32; t_count * kv_dim];
        let mut att_out = vec![0f32; t_count * dim];
        let mut gate = vec![0f32; t_count * c.ffn_dim];
        let mut up = vec![0f32; t_count * c.ffn_dim];

        for (l, layer) in self.layers.iter().enumerate() {
            // Attention block.
            rmsnorm_rows(&x, &layer.attn_norm, c.rms_eps, &mut xb);
            layer.wq.matmul(&xb, &mut q);
            layer.wk.matmul(&xb, &mut k);
            layer.wv.matmul(&xb, &mut v);
            for t in 0..t_count {
                let pos = start + t;
                for h in 0..c.n_heads {
                    self.rope(&mut q[t * dim + h * c.head_dim..][..c.head_dim], pos);
                }
                for h in 0..c.n_kv_heads {
                    self.rope(&mut k[t * kv_dim + h * c.head_dim..][..c.head_dim], pos);
                }
            }
            cache.k[l].extend_from_slice(&k);
            cache.v[l].extend_from_slice(&v);
            for t in 0..t_count {
                self.attention(&q[t * dim..(t + 1) * dim], &cache.k[l], &cache.v[l], start + t + 1, &mut att_out[t * dim..(t + 1) * dim]);
            }
            layer.wo.matmul(&att_out, &mut xb);
            add_into(&mut x, &xb);

            // Feed-forward block: down(silu(gate(xn)) * up(xn)).
            rmsnorm_rows(&x, &layer.ffn_norm, c.rms_eps, &mut xb);
            layer.w_gate.matmul(&xb, &mut gate);
            layer.w_up.matmul(&xb, &mut up);
            for (g, u) in gate.iter_mut().zip(&up) {
                *g = silu(*g) * u;
            }
            layer.w_down.matmul(&gate, &mut xb);
            add_into(&mut x, &xb);
        }
        cache.len += t_count;

        rmsnorm_rows(&x, &self.output_norm, c.rms_eps, &mut xb);
        let head = self.output.as_ref().unwrap_or(&self.token_embd);
        let mut logits = vec![0f32; t_count * c.vocab_size];
        head.matmul(&xb, &mut logits);
        logits
    }

    /// Rotate adjacent pairs (x[2i], x[2i+1]) of the first rope_dim dims by pos * theta_i, as
    /// llama.cpp's NORM rope mode does for the llama architecture (the GGUF converter permuted
    /// q/k rows so that adjacent pairs are the rotary pairs). theta_i is computed like ggml: a
    /// running product of base^(-2/rope_dim) in f32, divided by rope_freqs[i] when present.
    fn rope(&self, x: &mut [f32], pos: usize) {
        let c = &self.config;
        let theta_scale = c.rope_base.powf(-2.0 / c.rope_dim as f32);
        let mut theta = pos as f32;
        for i in 0..c.rope_dim / 2 {
            let factor = self.rope_freqs.as_ref().map_or(1.0, |f| f[i]);
            let angle = theta / factor;
            let (sin, cos) = angle.sin_cos();
            let (x0, x1) = (x[2 * i], x[2 * i + 1]);
            x[2 * i] = x0 * cos - x1 * sin;
            x[2 * i + 1] = x0 * sin + x1 * cos;
            theta *= theta_scale;
        }
    }

    /// Grouped-query attention of one query (dim) over the first `len` cached positions.
    fn attention(&self, q: &[f32], k_cache: &[f32], v_cache: &[f32], len: usize, out: &mut [f32]) {
        let c = &self.config;
        let (hd, kv_dim) = (c.head_dim, c.kv_dim());
        let group = c.n_heads / c.n_kv_heads;
        let scale = 1.0 / (hd as f32).sqrt();
        let mut scores = vec![0f32; len];
        for h in 0..c.n_heads {
            let kv_off = (h / group) * hd;
            let qh = &q[h * hd..(h + 1) * hd];
            for (p, s) in scores.iter_mut().enumerate() {
                *s = dot(qh, &k_cache[p * kv_dim + kv_off..][..hd]) * scale;
            }
            softmax(&mut scores);
            let oh = &mut out[h * hd..(h + 1) * hd];
            oh.fill(0.0);
            for (p, &w) in scores.iter().enumerate() {
                for (o, v) in oh.iter_mut().zip(&v_cache[p * kv_dim + kv_off..][..hd]) {
                    *o += w * v;
                }
            }
        }
    }
}

/// Each row of x (rows of `w.len()`): x / sqrt(mean(x^2) + eps) * w. The mean is summed in f64
/// as ggml does.
pub fn rmsnorm_rows(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let n = w.len();
    for (xr, or) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        let sum: f64 = xr.iter().map(|&v| (v as f64) * (v as f64)).sum();
        let scale = 1.0 / ((sum / n as f64) as f32 + eps).sqrt();
        for ((o, &v), &g) in or.iter_mut().zip(xr).zip(w) {
            *o = v * scale * g;
        }
    }
}

pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in x.iter_mut() {
        *v /= sum;
    }
}

pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

fn add_into(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}
