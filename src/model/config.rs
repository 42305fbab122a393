//! Llama hyper-parameters from GGUF metadata, and the tensor names each layer uses.

use crate::gguf::{GgufError, GgufFile, TensorInfo};
use crate::quant::GgmlType;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Load(#[from] super::loader::LoadError),
    #[error("model architecture is {0:?}; Hearth runs Llama-family models (general.architecture = \"llama\")")]
    UnsupportedArchitecture(String),
    #[error("GGUF metadata key {0:?} is missing; the file is not a complete Llama model")]
    MissingKey(String),
    #[error("GGUF metadata key {key:?} has an invalid value {value}: {why}")]
    BadValue { key: String, value: String, why: &'static str },
    #[error("tensor {0:?} is missing from the model file")]
    MissingTensor(String),
    #[error("tensor {name:?} has shape {dims:?}, expected {expected:?}")]
    BadShape { name: String, dims: Vec<u64>, expected: Vec<u64> },
    #[error("tensor {name:?} has type {ty}, which cannot be used there (norms and rope_freqs must be F32)")]
    BadTensorType { name: String, ty: GgmlType },
}

/// Llama hyper-parameters, named as in llama2.c.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LlamaConfig {
    /// Transformer blocks (`llama.block_count`).
    pub n_layers: usize,
    /// Residual stream width (`llama.embedding_length`).
    pub dim: usize,
    /// FFN hidden width (`llama.feed_forward_length`).
    pub ffn_dim: usize,
    pub n_heads: usize,
    /// Key/value heads; `n_heads / n_kv_heads` query heads share each (grouped-query attention).
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Leading dimensions of each head that RoPE rotates (`llama.rope.dimension_count`).
    pub rope_dim: usize,
    pub rope_base: f32,
    pub rms_eps: f32,
    /// The context length the model was trained for (`llama.context_length`).
    pub context_length: usize,
    pub vocab_size: usize,
    /// No `output.weight`: the output head reuses `token_embd.weight` (Llama 3.2 1B/3B, SmolLM2).
    pub tied_output: bool,
    /// `rope_freqs.weight` present: per-pair frequency divisors (Llama 3.1 rope scaling).
    pub has_rope_freqs: bool,
}

/// Names of one block's tensors, as llama.cpp writes them.
pub struct LayerNames {
    pub attn_norm: String,
    pub wq: String,
    pub wk: String,
    pub wv: String,
    pub wo: String,
    pub ffn_norm: String,
    pub w_gate: String,
    pub w_up: String,
    pub w_down: String,
}

impl LayerNames {
    pub fn new(layer: usize) -> Self {
        let n = |s: &str| format!("blk.{layer}.{s}.weight");
        Self {
            attn_norm: n("attn_norm"),
            wq: n("attn_q"),
            wk: n("attn_k"),
            wv: n("attn_v"),
            wo: n("attn_output"),
            ffn_norm: n("ffn_norm"),
            w_gate: n("ffn_gate"),
            w_up: n("ffn_up"),
            w_down: n("ffn_down"),
        }
    }
}

pub const TOKEN_EMBD: &str = "token_embd.weight";
pub const OUTPUT_NORM: &str = "output_norm.weight";
pub const OUTPUT: &str = "output.weight";
pub const ROPE_FREQS: &str = "rope_freqs.weight";

impl LlamaConfig {
    pub fn from_gguf(file: &GgufFile) -> Result<Self, ModelError> {
        let arch = file.get_str("general.architecture")?.ok_or_else(|| ModelError::MissingKey("general.architecture".into()))?;
        if arch != "llama" {
            return Err(ModelError::UnsupportedArchitecture(arch.into()));
        }
        let int = |key: &str| -> Result<Option<usize>, ModelError> {
            let full = format!("llama.{key}");
            match file.get_int(&full)? {
                None => Ok(None),
                Some(v) if v > 0 && v <= (1 << 40) => Ok(Some(v as usize)),
                Some(v) => Err(ModelError::BadValue { key: full, value: v.to_string(), why: "must be a positive count" }),
            }
        };
        let need = |key: &str| int(key)?.ok_or_else(|| ModelError::MissingKey(format!("llama.{key}")));
        let n_layers = need("block_count")?;
        let dim = need("embedding_length")?;
        let ffn_dim = need("feed_forward_length")?;
        let n_heads = need("attention.head_count")?;
        let n_kv_heads = int("attention.head_count_kv")?.unwrap_or(n_heads);
        let context_length = need("context_length")?;
        let bad = |key: &str, value: usize, why| ModelError::BadValue { key: format!("llama.{key}"), value: value.to_string(), why };
        if dim % n_heads != 0 {
            return Err(bad("attention.head_count", n_heads, "must divide embedding_length"));
        }
        if n_heads % n_kv_heads != 0 {
            return Err(bad("attention.head_count_kv", n_kv_heads, "must divide attention.head_count"));
        }
        let head_dim = dim / n_heads;
        let rope_dim = int("rope.dimension_count")?.unwrap_or(head_dim);
        if rope_dim > head_dim || rope_dim % 2 != 0 {
            return Err(bad("rope.dimension_count", rope_dim, "must be even and at most the head size"));
        }
        let float = |key: &str, default: Option<f64>| -> Result<f32, ModelError> {
            let full = format!("llama.{key}");
            let v = file.get_f64(&full)?.or(default).ok_or_else(|| ModelError::MissingKey(full.clone()))?;
            if !(v.is_finite() && v > 0.0) {
                return Err(ModelError::BadValue { key: full, value: v.to_string(), why: "must be a positive number" });
            }
            Ok(v as f32)
        };
        // llama.cpp's defaults when a converter left these out.
        let rope_base = float("rope.freq_base", Some(10000.0))?;
        let rms_eps = float("attention.layer_norm_rms_epsilon", None)?;

        let embd = file.tensor(TOKEN_EMBD).ok_or_else(|| ModelError::MissingTensor(TOKEN_EMBD.into()))?;
        let vocab_from_tensor = embd.rows() as usize;
        let vocab_size = int("vocab_size")?.unwrap_or(vocab_from_tensor);
        let cfg = Self {
            n_layers,
            dim,
            ffn_dim,
            n_heads,
            n_kv_heads,
            head_dim,
            rope_dim,
            rope_base,
            rms_eps,
            context_length,
            vocab_size,
            tied_output: file.tensor(OUTPUT).is_none(),
            has_rope_freqs: file.tensor(ROPE_FREQS).is_some(),
        };
        cfg.check_tensors(file)?;
        Ok(cfg)
    }

    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Every tensor the forward pass reads must exist with the shape it expects, so that the
    /// loaders and kernels can trust shapes without checking again.
    fn check_tensors(&self, file: &GgufFile) -> Result<(), ModelError> {
        let (d, f, kv, v) = (self.dim as u64, self.ffn_dim as u64, self.kv_dim() as u64, self.vocab_size as u64);
        let expect = |name: &str, dims: &[u64], f32_only: bool| -> Result<&TensorInfo, ModelError> {
            let t = file.tensor(name).ok_or_else(|| ModelError::MissingTensor(name.into()))?;
            if t.dims != dims {
                return Err(ModelError::BadShape { name: name.into(), dims: t.dims.clone(), expected: dims.to_vec() });
            }
            if f32_only && t.ty != GgmlType::F32 {
                return Err(ModelError::BadTensorType { name: name.into(), ty: t.ty });
            }
            Ok(t)
        };
        expect(TOKEN_EMBD, &[d, v], false)?;
        expect(OUTPUT_NORM, &[d], true)?;
        if !self.tied_output {
            expect(OUTPUT, &[d, v], false)?;
        }
        if self.has_rope_freqs {
            expect(ROPE_FREQS, &[self.rope_dim as u64 / 2], true)?;
        }
        for layer in 0..self.n_layers {
            let n = LayerNames::new(layer);
            expect(&n.attn_norm, &[d], true)?;
            expect(&n.wq, &[d, d], false)?;
            expect(&n.wk, &[d, kv], false)?;
            expect(&n.wv, &[d, kv], false)?;
            expect(&n.wo, &[d, d], false)?;
            expect(&n.ffn_norm, &[d], true)?;
            expect(&n.w_gate, &[d, f], false)?;
            expect(&n.w_up, &[d, f], false)?;
            expect(&n.w_down, &[f, d], false)?;
        }
        Ok(())
    }
}
