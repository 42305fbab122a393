//! Synthetic Llama models written with the GGUF writer: random but valid quantized blocks in a
//! chosen arrangement. Tests use small ones holding every tensor type; `hearth synth` writes a
//! Llama 3 8B-shaped one (~4.9 GB, streamed to disk, never in memory) for full-size runs.

use crate::gguf::{GgufFile, GgufWriter, Value};
use crate::model::config::{LayerNames, OUTPUT, OUTPUT_NORM, ROPE_FREQS, TOKEN_EMBD};
use crate::quant::GgmlType;
use crate::sampling::Rng;
use half::{bf16, f16};
use std::io::{self, Write};

/// How tensor types are chosen.
#[derive(Clone, Debug, PartialEq)]
pub enum TypeMix {
    /// llama.cpp's Q4_K_M: Q4_K everywhere, Q6_K for the output head and for attn_v/ffn_down
    /// of the layers `use_more_bits` picks.
    Q4KM,
    /// Cycle through every supported type, so one small model exercises every kernel.
    Every,
    /// One type for every matrix.
    All(GgmlType),
}

#[derive(Clone, Debug)]
pub struct SyntheticSpec {
    pub n_layers: usize,
    pub dim: usize,
    pub ffn_dim: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub vocab: usize,
    pub context: usize,
    pub rope_base: f32,
    pub tied_output: bool,
    pub rope_freqs: bool,
    pub types: TypeMix,
    pub seed: u64,
}

impl SyntheticSpec {
    /// The exact shapes of Llama 3 8B (Instruct) in Q4_K_M: 32 layers, dim 4096, FFN 14336,
    /// 32 query / 8 KV heads, 128256 tokens, rope base 500000, an untied output head.
    pub fn llama3_8b() -> Self {
        Self {
            n_layers: 32,
            dim: 4096,
            ffn_dim: 14336,
            n_heads: 32,
            n_kv_heads: 8,
            vocab: 128256,
            context: 8192,
            rope_base: 500000.0,
            tied_output: false,
            rope_freqs: false,
            types: TypeMix::Q4KM,
            seed: 1,
        }
    }
}

impl SyntheticSpec {
    /// A small model in the same arrangement (2 layers, dim 256, GQA 4/2, untied head): a
    /// few MB with a 1000-token vocabulary, ~19 MB with the Llama 3 one.
    pub fn tiny() -> Self {
        Self {
            n_layers: 2,
            dim: 256,
            ffn_dim: 512,
            n_heads: 4,
            n_kv_heads: 2,
            vocab: 1000,
            context: 2048,
            ..Self::llama3_8b()
        }
    }
}

/// Entries of `tokenizer.ggml.tokens` in a header: the vocabulary a lent tokenizer brings.
pub fn tokenizer_vocab(file: &GgufFile) -> Option<usize> {
    file.get_array("tokenizer.ggml.tokens").ok().flatten().map(|a| a.len())
}

/// llama.cpp's choice of layers that get more bits in the _M mixes.
fn use_more_bits(layer: usize, n_layers: usize) -> bool {
    layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer >= n_layers / 8 && (layer - n_layers / 8) % 3 == 2)
}

/// Write the model. `tokenizer` (e.g. the tiny fixture's header) lends its `tokenizer.*` keys
/// so the result can be prompted with text; its vocabulary must match `spec.vocab`.
pub fn write(spec: &SyntheticSpec, tokenizer: Option<&GgufFile>, out: &mut dyn Write) -> io::Result<()> {
    if let Some(n) = tokenizer.and_then(tokenizer_vocab) {
        if n != spec.vocab {
            let msg = format!("the tokenizer has {n} tokens but the model's vocabulary is {}", spec.vocab);
            return Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
        }
    }
    let mut w = GgufWriter::new();
    let u32v = |v: usize| Value::U32(v as u32);
    w.meta("general.architecture", Value::String("llama".into()));
    w.meta("general.name", Value::String("hearth synthetic".into()));
    w.meta("llama.block_count", u32v(spec.n_layers));
    w.meta("llama.embedding_length", u32v(spec.dim));
    w.meta("llama.feed_forward_length", u32v(spec.ffn_dim));
    w.meta("llama.attention.head_count", u32v(spec.n_heads));
    w.meta("llama.attention.head_count_kv", u32v(spec.n_kv_heads));
    w.meta("llama.context_length", u32v(spec.context));
    w.meta("llama.rope.freq_base", Value::F32(spec.rope_base));
    w.meta("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5));
    w.meta("llama.vocab_size", u32v(spec.vocab));
    if let Some(t) = tokenizer {
        for (k, v) in t.metadata.iter().filter(|(k, _)| k.starts_with("tokenizer.")) {
            w.meta(k, v.clone());
        }
    }

    let (d, f, kv) = (spec.dim as u64, spec.ffn_dim as u64, (spec.dim / spec.n_heads * spec.n_kv_heads) as u64);
    let mut seed = spec.seed;
    let mut next_seed = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        seed
    };
    let mut cycle = 0usize;
    let mut pick = |default: GgmlType, more_bits: bool| match &spec.types {
        TypeMix::Q4KM => if more_bits { GgmlType::Q6_K } else { default },
        TypeMix::All(t) => *t,
        TypeMix::Every => {
            cycle += 1;
            GgmlType::SUPPORTED[cycle % GgmlType::SUPPORTED.len()]
        }
    };
    let matrix = |w: &mut GgufWriter, name: &str, cols: u64, rows: u64, ty: GgmlType, scale: f32, seed: u64| {
        let size = ty.bytes_for(cols * rows).expect("synthetic widths are whole blocks");
        let row_bytes = size / rows;
        let mut rng = Rng::new(seed);
        let mut row = vec![0u8; row_bytes as usize];
        w.tensor_with(name, &[cols, rows], ty, size, move |out| {
            for _ in 0..rows {
                random_row(ty, &mut rng, scale, &mut row);
                out.write_all(&row)?;
            }
            Ok(())
        });
    };
    let norm = |w: &mut GgufWriter, name: &str, n: u64, seed: u64| {
        let mut rng = Rng::new(seed);
        let data: Vec<u8> = (0..n).flat_map(|_| (0.8 + 0.4 * rng.next_f32()).to_le_bytes()).collect();
        w.tensor(name, &[n], GgmlType::F32, data);
    };

    let embd_ty = pick(GgmlType::Q4_K, false);
    matrix(&mut w, TOKEN_EMBD, d, spec.vocab as u64, embd_ty, 1.0, next_seed());
    if spec.rope_freqs {
        let half = d / spec.n_heads as u64 / 2;
        let data: Vec<u8> = (0..half).flat_map(|i| (1.0 + i as f32 / half as f32 * 7.0).to_le_bytes()).collect();
        w.tensor(ROPE_FREQS, &[half], GgmlType::F32, data);
    }
    // Matrix scales keep activations of order 1 through many layers.
    let s_in = 1.0 / (d as f32).sqrt();
    let s_down = 1.0 / (f as f32).sqrt();
    for l in 0..spec.n_layers {
        let n = LayerNames::new(l);
        let more = use_more_bits(l, spec.n_layers);
        norm(&mut w, &n.attn_norm, d, next_seed());
        matrix(&mut w, &n.wq, d, d, pick(GgmlType::Q4_K, false), s_in, next_seed());
        matrix(&mut w, &n.wk, d, kv, pick(GgmlType::Q4_K, false), s_in, next_seed());
        matrix(&mut w, &n.wv, d, kv, pick(GgmlType::Q4_K, more), s_in, next_seed());
        matrix(&mut w, &n.wo, d, d, pick(GgmlType::Q4_K, false), s_in, next_seed());
        norm(&mut w, &n.ffn_norm, d, next_seed());
        matrix(&mut w, &n.w_gate, d, f, pick(GgmlType::Q4_K, false), s_in, next_seed());
        matrix(&mut w, &n.w_up, d, f, pick(GgmlType::Q4_K, false), s_in, next_seed());
        matrix(&mut w, &n.w_down, f, d, pick(GgmlType::Q4_K, more), s_down, next_seed());
    }
    norm(&mut w, OUTPUT_NORM, d, next_seed());
    if !spec.tied_output {
        matrix(&mut w, OUTPUT, d, spec.vocab as u64, pick(GgmlType::Q6_K, true), s_in, next_seed());
    }
    w.write(out)
}

/// Fill one row with random valid blocks of `ty` whose values are about `scale` in size:
/// random quant bits, and scale fields set to finite values (random f16 bits could be NaN).
pub fn random_row(ty: GgmlType, rng: &mut Rng, scale: f32, row: &mut [u8]) {
    for chunk in row.chunks_mut(8) {
        let r = rng.next_u64().to_le_bytes();
        chunk.copy_from_slice(&r[..chunk.len()]);
    }
    let (_, bytes) = ty.block_layout().expect("supported type");
    let f16_at = |b: &mut [u8], at: usize, v: f32| b[at..at + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
    for b in row.chunks_mut(bytes as usize) {
        let u = rng.next_f32();
        match ty {
            GgmlType::F32 => b.copy_from_slice(&((u * 2.0 - 1.0) * scale).to_le_bytes()),
            GgmlType::F16 => f16_at(b, 0, (u * 2.0 - 1.0) * scale),
            GgmlType::BF16 => b.copy_from_slice(&bf16::from_f32((u * 2.0 - 1.0) * scale).to_le_bytes()),
            // Symmetric types: values are (q - 8 or 16 or 0) * d.
            GgmlType::Q4_0 => f16_at(b, 0, scale / 8.0 * (0.5 + u)),
            GgmlType::Q5_0 => f16_at(b, 0, scale / 16.0 * (0.5 + u)),
            GgmlType::Q8_0 => f16_at(b, 0, scale / 128.0 * (0.5 + u)),
            // Offset types: q * d + m with m = -(middle of the range).
            GgmlType::Q4_1 => {
                f16_at(b, 0, scale / 8.0 * (0.5 + u));
                f16_at(b, 2, -scale * (0.5 + u));
            }
            GgmlType::Q5_1 => {
                f16_at(b, 0, scale / 16.0 * (0.5 + u));
                f16_at(b, 2, -scale * (0.5 + u));
            }
            // K types: d * 6-bit scale * q - dmin * 6-bit min.
            GgmlType::Q4_K => {
                f16_at(b, 0, scale / 8.0 / 32.0 * (0.5 + u));
                f16_at(b, 2, scale / 32.0 * (0.5 + u));
            }
            GgmlType::Q5_K => {
                f16_at(b, 0, scale / 16.0 / 32.0 * (0.5 + u));
                f16_at(b, 2, scale / 32.0 * (0.5 + u));
            }
            GgmlType::Q6_K => f16_at(b, 208, scale / 32.0 / 64.0 * (0.5 + u)),
            _ => unreachable!("block_layout covers the supported types"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_model_parses_and_has_every_type() {
        let spec = SyntheticSpec {
            n_layers: 2,
            dim: 256,
            ffn_dim: 512,
            n_heads: 4,
            n_kv_heads: 2,
            vocab: 300,
            context: 64,
            rope_base: 10000.0,
            tied_output: false,
            rope_freqs: true,
            types: TypeMix::Every,
            seed: 3,
        };
        let mut bytes = Vec::new();
        write(&spec, None, &mut bytes).unwrap();
        let file = crate::gguf::parse_complete(&bytes).unwrap();
        let config = crate::model::config::LlamaConfig::from_gguf(&file).unwrap();
        assert_eq!(config.n_layers, 2);
        for ty in GgmlType::SUPPORTED {
            assert!(file.tensors.iter().any(|t| t.ty == ty), "{ty} missing");
        }
    }

    #[test]
    fn more_bits_layers_match_llama_cpp() {
        let picked: Vec<usize> = (0..32).filter(|&l| use_more_bits(l, 32)).collect();
        assert_eq!(picked, vec![0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]);
    }
}
