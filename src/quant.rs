//! ggml tensor types: their ids, exact block layouts, and CPU dequantization.
//!
//! The dequantizers here are the reference every GPU kernel is tested against, so they follow
//! ggml's arithmetic exactly (same operand order, f32 throughout) and match it bit for bit.
//! Block layouts (bytes, little-endian, no padding; `f16` is IEEE half):
//!
//! | type | elems | bytes | layout                                                        |
//! |------|-------|-------|---------------------------------------------------------------|
//! | Q4_0 | 32    | 18    | d:f16, qs[16] (low nibbles = elems 0..16, high = 16..32)     |
//! | Q4_1 | 32    | 20    | d:f16, m:f16, qs[16]                                          |
//! | Q5_0 | 32    | 22    | d:f16, qh:u32 (5th bits), qs[16]                              |
//! | Q5_1 | 32    | 24    | d:f16, m:f16, qh:u32, qs[16]                                  |
//! | Q8_0 | 32    | 34    | d:f16, qs[32]:i8                                              |
//! | Q4_K | 256   | 144   | d:f16, dmin:f16, scales[12] (8 x 6-bit scale+min), qs[128]   |
//! | Q5_K | 256   | 176   | d:f16, dmin:f16, scales[12], qh[32], qs[128]                  |
//! | Q6_K | 256   | 210   | ql[128], qh[64], scales[16]:i8, d:f16                         |

use half::{bf16, f16};
use std::fmt;

/// A ggml tensor type id as stored in GGUF tensor infos. Every id ggml has assigned is named so
/// that an unsupported file gets an error that says which type it uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GgmlType(pub u32);

impl GgmlType {
    pub const F32: Self = Self(0);
    pub const F16: Self = Self(1);
    pub const Q4_0: Self = Self(2);
    pub const Q4_1: Self = Self(3);
    pub const Q5_0: Self = Self(6);
    pub const Q5_1: Self = Self(7);
    pub const Q8_0: Self = Self(8);
    pub const Q4_K: Self = Self(12);
    pub const Q5_K: Self = Self(13);
    pub const Q6_K: Self = Self(14);
    pub const BF16: Self = Self(30);

    /// Every type Hearth can read, in id order.
    pub const SUPPORTED: [Self; 11] = [
        Self::F32,
        Self::F16,
        Self::Q4_0,
        Self::Q4_1,
        Self::Q5_0,
        Self::Q5_1,
        Self::Q8_0,
        Self::Q4_K,
        Self::Q5_K,
        Self::Q6_K,
        Self::BF16,
    ];

    /// ggml's name for the id, or None for an id ggml never assigned.
    pub fn name(self) -> Option<&'static str> {
        const NAMES: [&str; 40] = [
            "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K",
            "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S",
            "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M",
            "BF16", "Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8", "TQ1_0", "TQ2_0", "IQ4_NL_4_4",
            "IQ4_NL_4_8", "IQ4_NL_8_8", "MXFP4",
        ];
        NAMES.get(self.0 as usize).copied()
    }

    /// (elements per block, bytes per block) for supported types, None otherwise.
    pub fn block_layout(self) -> Option<(u64, u64)> {
        Some(match self {
            Self::F32 => (1, 4),
            Self::F16 | Self::BF16 => (1, 2),
            Self::Q4_0 => (32, 18),
            Self::Q4_1 => (32, 20),
            Self::Q5_0 => (32, 22),
            Self::Q5_1 => (32, 24),
            Self::Q8_0 => (32, 34),
            Self::Q4_K => (256, 144),
            Self::Q5_K => (256, 176),
            Self::Q6_K => (256, 210),
            _ => return None,
        })
    }

    pub fn is_supported(self) -> bool {
        self.block_layout().is_some()
    }

    /// Bytes taken by `n` elements, or None when `n` is not a whole number of blocks, the type is
    /// unsupported, or the size overflows u64.
    pub fn bytes_for(self, n: u64) -> Option<u64> {
        let (block, bytes) = self.block_layout()?;
        if n % block != 0 {
            return None;
        }
        (n / block).checked_mul(bytes)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "type id {}", self.0),
        }
    }
}

fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Dequantize whole blocks of `ty` from `src` into `dst` (`dst.len()` elements; `src` must hold
/// exactly `ty.bytes_for(dst.len())` bytes). Panics on a length mismatch: callers size both from
/// validated tensor infos.
pub fn dequantize(ty: GgmlType, src: &[u8], dst: &mut [f32]) {
    let (block, bytes) = ty.block_layout().expect("dequantize: unsupported type");
    let (block, bytes) = (block as usize, bytes as usize);
    assert_eq!(dst.len() % block, 0, "dequantize: partial block");
    assert_eq!(src.len(), dst.len() / block * bytes, "dequantize: byte length");
    for (b, y) in src.chunks_exact(bytes).zip(dst.chunks_exact_mut(block)) {
        match ty {
            GgmlType::F32 => y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            GgmlType::F16 => y[0] = f16_at(b, 0),
            GgmlType::BF16 => y[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32(),
            GgmlType::Q4_0 => dequant_q4_0(b, y),
            GgmlType::Q4_1 => dequant_q4_1(b, y),
            GgmlType::Q5_0 => dequant_q5_0(b, y),
            GgmlType::Q5_1 => dequant_q5_1(b, y),
            GgmlType::Q8_0 => dequant_q8_0(b, y),
            GgmlType::Q4_K => dequant_q4_k(b, y),
            GgmlType::Q5_K => dequant_q5_k(b, y),
            GgmlType::Q6_K => dequant_q6_k(b, y),
            _ => unreachable!("block_layout covers exactly these types"),
        }
    }
}

fn dequant_q4_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qs = &b[2..18];
    for j in 0..16 {
        y[j] = ((qs[j] & 0x0F) as i32 - 8) as f32 * d;
        y[j + 16] = ((qs[j] >> 4) as i32 - 8) as f32 * d;
    }
}

fn dequant_q4_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qs = &b[4..20];
    for j in 0..16 {
        y[j] = (qs[j] & 0x0F) as f32 * d + m;
        y[j + 16] = (qs[j] >> 4) as f32 * d + m;
    }
}

fn dequant_q5_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    for j in 0..16 {
        let hi0 = ((qh >> j) << 4) & 0x10;
        let hi1 = (qh >> (j + 12)) & 0x10;
        y[j] = (((qs[j] & 0x0F) as u32 | hi0) as i32 - 16) as f32 * d;
        y[j + 16] = (((qs[j] >> 4) as u32 | hi1) as i32 - 16) as f32 * d;
    }
}

fn dequant_q5_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let qs = &b[8..24];
    for j in 0..16 {
        let hi0 = ((qh >> j) << 4) & 0x10;
        let hi1 = (qh >> (j + 12)) & 0x10;
        y[j] = ((qs[j] & 0x0F) as u32 | hi0) as f32 * d + m;
        y[j + 16] = ((qs[j] >> 4) as u32 | hi1) as f32 * d + m;
    }
}

fn dequant_q8_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for j in 0..32 {
        y[j] = (b[2 + j] as i8) as f32 * d;
    }
}

/// The j-th (scale, min) pair of a K-quant super-block: eight 6-bit pairs packed in 12 bytes.
pub fn k_scale_min(j: usize, scales: &[u8]) -> (u8, u8) {
    if j < 4 {
        (scales[j] & 63, scales[j + 4] & 63)
    } else {
        let sc = (scales[j + 4] & 0x0F) | ((scales[j - 4] >> 6) << 4);
        let m = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
        (sc, m)
    }
}

fn dequant_q4_k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let scales = &b[4..16];
    let qs = &b[16..144];
    // Four 64-element groups; each uses 32 bytes of qs: low nibbles then high nibbles.
    for g in 0..4 {
        let (sc1, m1) = k_scale_min(2 * g, scales);
        let (sc2, m2) = k_scale_min(2 * g + 1, scales);
        let (d1, m1) = (d * sc1 as f32, dmin * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, dmin * m2 as f32);
        let q = &qs[32 * g..32 * g + 32];
        let out = &mut y[64 * g..64 * g + 64];
        for l in 0..32 {
            out[l] = d1 * (q[l] & 0x0F) as f32 - m1;
            out[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
        }
    }
}

fn dequant_q5_k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for g in 0..4 {
        let (sc1, m1) = k_scale_min(2 * g, scales);
        let (sc2, m2) = k_scale_min(2 * g + 1, scales);
        let (d1, m1) = (d * sc1 as f32, dmin * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, dmin * m2 as f32);
        let (u1, u2) = (1u8 << (2 * g), 2u8 << (2 * g));
        let q = &qs[32 * g..32 * g + 32];
        let out = &mut y[64 * g..64 * g + 64];
        for l in 0..32 {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            out[l] = d1 * ((q[l] & 0x0F) + h1) as f32 - m1;
            out[l + 32] = d2 * ((q[l] >> 4) + h2) as f32 - m2;
        }
    }
}

fn dequant_q6_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 208);
    // Two 128-element halves; each uses 64 bytes of ql, 32 of qh and 8 scales.
    for h in 0..2 {
        let ql = &b[64 * h..64 * h + 64];
        let qh = &b[128 + 32 * h..128 + 32 * h + 32];
        let sc = &b[192 + 8 * h..192 + 8 * h + 8];
        let out = &mut y[128 * h..128 * h + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            out[l] = d * (sc[is] as i8) as f32 * q1 as f32;
            out[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
            out[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
            out[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_0_block_by_hand() {
        // d = 0.5, nibbles 0..16 low and 15..0 high.
        let mut b = vec![0u8; 18];
        b[0..2].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        for j in 0..16 {
            b[2 + j] = (j as u8) | ((15 - j as u8) << 4);
        }
        let mut y = [0f32; 32];
        dequantize(GgmlType::Q4_0, &b, &mut y);
        for j in 0..16 {
            assert_eq!(y[j], (j as f32 - 8.0) * 0.5);
            assert_eq!(y[j + 16], (7.0 - j as f32) * 0.5);
        }
    }

    #[test]
    fn q5_0_high_bits() {
        let mut b = vec![0u8; 22];
        b[0..2].copy_from_slice(&f16::from_f32(1.0).to_le_bytes());
        // Only element 3 and element 16+5 get their fifth bit.
        let qh: u32 = (1 << 3) | (1 << (5 + 16));
        b[2..6].copy_from_slice(&qh.to_le_bytes());
        let mut y = [0f32; 32];
        dequantize(GgmlType::Q5_0, &b, &mut y);
        assert_eq!(y[3], 0.0); // 16 - 16
        assert_eq!(y[0], -16.0);
        assert_eq!(y[16 + 5], 0.0);
        assert_eq!(y[16 + 4], -16.0);
    }

    #[test]
    fn k_scale_min_unpacks_six_bits() {
        let mut s = [0u8; 12];
        s[0] = 0b11_000001; // scale 1 of pair 0, top bits 3 feed pair 4's scale
        s[4] = 0b10_000010; // min 2 of pair 0, top bits 2 feed pair 4's min
        s[8] = 0x5A; // pair 4: scale low nibble 0xA, min low nibble 0x5
        assert_eq!(k_scale_min(0, &s), (1, 2));
        assert_eq!(k_scale_min(4, &s), (0xA | (3 << 4), 0x5 | (2 << 4)));
    }

    #[test]
    fn sizes_and_names() {
        assert_eq!(GgmlType::Q6_K.bytes_for(512), Some(420));
        assert_eq!(GgmlType::Q4_K.bytes_for(100), None);
        assert_eq!(GgmlType(10).to_string(), "Q2_K");
        assert_eq!(GgmlType(10).block_layout(), None);
        assert_eq!(GgmlType(999).to_string(), "type id 999");
    }
}
