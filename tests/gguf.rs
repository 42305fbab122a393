//! The GGUF reader against the writer, the real tiny Llama 3 fixture, and hostile files.
//!
//! Hostile headers are assembled by hand with [`Raw`] (the writer only makes valid files) and
//! each must fail with the error variant that names its problem. The absurd counts and lengths
//! would abort the test process on allocation if the reader trusted them, so passing at all is
//! part of what these tests check.
#![cfg(not(target_arch = "wasm32"))]

use hearth::gguf::{parse, parse_complete, Array, GgufError, GgufFile, GgufWriter, Parsed, Value, MAX_ARRAY_DEPTH};
use hearth::model::config::LlamaConfig;
use hearth::quant::GgmlType;

// GGUF value type ids (the reader's own table is private).
const U8: u32 = 0;
const U32: u32 = 4;
const STRING: u32 = 8;
const ARRAY: u32 = 9;
const U64: u32 = 10;

/// Hand-assembled GGUF bytes, for headers the writer would never produce.
struct Raw(Vec<u8>);

impl Raw {
    fn new(version: u32, tensors: u64, kvs: u64) -> Self {
        Raw(b"GGUF".to_vec()).u32(version).u64(tensors).u64(kvs)
    }
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
    fn str(self, s: &[u8]) -> Self {
        self.u64(s.len() as u64).bytes(s)
    }
    fn kv_u32(self, key: &str, v: u32) -> Self {
        self.str(key.as_bytes()).u32(U32).u32(v)
    }
    fn tensor(self, name: &[u8], dims: &[u64], ty: u32, rel: u64) -> Self {
        let r = dims.iter().fold(self.str(name).u32(dims.len() as u32), |r, &d| r.u64(d));
        r.u32(ty).u64(rel)
    }
    /// Pad to the default 32-byte alignment and append `n` bytes of tensor data.
    fn data(mut self, n: usize) -> Vec<u8> {
        let padded = self.0.len().div_ceil(32) * 32 + n;
        self.0.resize(padded, 0);
        self.0
    }
}

fn err(bytes: &[u8]) -> GgufError {
    parse_complete(bytes).expect_err("a hostile file must not parse")
}

fn small_file() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.meta("general.architecture", Value::String("llama".into()));
    w.meta("tokenizer.ggml.tokens", Value::Array(Array::String(vec!["<s>".into(), "a".into(), "bé".into()])));
    w.meta("llama.block_count", Value::U32(2));
    w.tensor("a", &[8], GgmlType::F32, (0..32).collect());
    w.tensor("b", &[32, 2], GgmlType::Q8_0, (0..68).map(|i| i as u8 ^ 0x5a).collect());
    w.to_bytes()
}

fn assert_same(a: &GgufFile, b: &GgufFile) {
    assert_eq!(a.version, b.version);
    assert_eq!(a.metadata, b.metadata);
    assert_eq!(a.tensors, b.tensors);
    assert_eq!((a.alignment, a.data_offset, a.file_len), (b.alignment, b.data_offset, b.file_len));
}

// ---------------------------------------------------------------------------------------------
// Round trips

#[test]
fn every_metadata_value_type_round_trips() {
    let meta = vec![
        ("u8", Value::U8(200)),
        ("i8", Value::I8(-100)),
        ("u16", Value::U16(60_000)),
        ("i16", Value::I16(-30_000)),
        ("u32", Value::U32(4_000_000_000)),
        ("i32", Value::I32(-2_000_000_000)),
        ("f32", Value::F32(1.5)),
        ("bool", Value::Bool(true)),
        ("string", Value::String("héllo ✓".into())),
        ("empty string", Value::String(String::new())),
        ("u64", Value::U64(u64::MAX)),
        ("i64", Value::I64(i64::MIN)),
        ("f64", Value::F64(-2.25)),
        ("a.u8", Value::Array(Array::U8(vec![0, 255]))),
        ("a.i8", Value::Array(Array::I8(vec![-128, 127]))),
        ("a.u16", Value::Array(Array::U16(vec![1, 65_535]))),
        ("a.i16", Value::Array(Array::I16(vec![-1, 2]))),
        ("a.u32", Value::Array(Array::U32(vec![7, u32::MAX]))),
        ("a.i32", Value::Array(Array::I32(vec![i32::MIN, 3]))),
        ("a.f32", Value::Array(Array::F32(vec![0.25, -1e30]))),
        ("a.bool", Value::Array(Array::Bool(vec![true, false, true]))),
        ("a.string", Value::Array(Array::String(vec!["a".into(), String::new(), "ü".into()]))),
        ("a.u64", Value::Array(Array::U64(vec![u64::MAX]))),
        ("a.i64", Value::Array(Array::I64(vec![-5, i64::MAX]))),
        ("a.f64", Value::Array(Array::F64(vec![1e300]))),
        ("a.empty", Value::Array(Array::U32(vec![]))),
        (
            "a.nested",
            Value::Array(Array::Array(vec![
                Array::U32(vec![1, 2]),
                Array::String(vec!["x".into(), "yz".into()]),
                Array::Array(vec![Array::I8(vec![-1]), Array::Array(vec![])]),
                Array::Array(vec![]),
            ])),
        ),
    ];
    let mut w = GgufWriter::new();
    for (k, v) in &meta {
        w.meta(k, v.clone());
    }
    let file = parse_complete(&w.to_bytes()).unwrap();
    let expected: Vec<(String, Value)> = meta.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    assert_eq!(file.metadata, expected);
    assert!(file.tensors.is_empty());

    assert_eq!(file.get_int("u64").unwrap(), Some(u64::MAX as i128));
    assert_eq!(file.get_int("i8").unwrap(), Some(-100));
    assert_eq!(file.get_f64("f32").unwrap(), Some(1.5));
    assert_eq!(file.get_bool("bool").unwrap(), Some(true));
    assert_eq!(file.get_str("string").unwrap(), Some("héllo ✓"));
    assert_eq!(file.get_array("a.string").unwrap().map(Array::len), Some(3));
    assert_eq!(file.get_str("missing").unwrap(), None);
    assert_eq!(file.get_str("u8"), Err(GgufError::WrongType { key: "u8".into(), expected: "a string" }));
}

/// From the first fuzzing run: a NaN made `==` on values fail (in the harness, not the reader).
/// The reader must keep NaNs, bit for bit, like any other value.
#[test]
fn nan_metadata_round_trips_bit_exactly() {
    let (nan32, nan64) = (f32::from_bits(0x7fc0_1234), f64::from_bits(0xfff8_0000_dead_beef));
    let mut w = GgufWriter::new();
    w.meta("f32", Value::F32(nan32));
    w.meta("a.f64", Value::Array(Array::F64(vec![1.0, nan64])));
    let file = parse_complete(&w.to_bytes()).unwrap();
    assert!(matches!(file.get("f32"), Some(Value::F32(x)) if x.to_bits() == nan32.to_bits()));
    assert!(matches!(file.get("a.f64"), Some(Value::Array(Array::F64(v))) if v[1].to_bits() == nan64.to_bits()));
}

#[test]
fn every_supported_tensor_type_round_trips() {
    let mut w = GgufWriter::new();
    let mut data = Vec::new();
    for ty in GgmlType::SUPPORTED {
        let (block, bytes) = ty.block_layout().unwrap();
        let d: Vec<u8> = (0..bytes * 6).map(|i| (i * 31 + ty.0 as u64) as u8).collect();
        w.tensor(&format!("t.{ty}"), &[block * 2, 3], ty, d.clone());
        data.push((ty, block, d));
    }
    let bytes = w.to_bytes();
    let file = parse_complete(&bytes).unwrap();
    assert_eq!(file.tensors.len(), GgmlType::SUPPORTED.len());
    assert_eq!(file.alignment, 32);
    let mut next = file.data_offset;
    for (t, (ty, block, d)) in file.tensors.iter().zip(&data) {
        assert_eq!(t.name, format!("t.{ty}"));
        assert_eq!((t.ty, t.dims.clone()), (*ty, vec![block * 2, 3]));
        assert_eq!((t.elements(), t.row_len(), t.rows()), (block * 6, block * 2, 3));
        assert_eq!(t.size, d.len() as u64);
        assert_eq!(Some(t.size), ty.bytes_for(t.elements()));
        // The writer packs tensors in order, each at the next aligned offset.
        assert_eq!(t.offset, next);
        assert_eq!(&bytes[t.offset as usize..t.end() as usize], &d[..]);
        next = t.end().div_ceil(32) * 32;
        assert_eq!(file.tensor(&t.name), Some(t));
    }
    assert_eq!(file.tensor_bytes(), data.iter().map(|(_, _, d)| d.len() as u64).sum::<u64>());
    assert_eq!(file.tensors.last().unwrap().end(), bytes.len() as u64);
}

#[test]
fn custom_alignment_round_trips() {
    for a in [8u32, 64, 4096] {
        let mut w = GgufWriter::new();
        w.meta("general.alignment", Value::U32(a));
        // Odd sizes, so each tensor needs padding after it.
        w.tensor("x", &[3], GgmlType::F16, vec![1, 2, 3, 4, 5, 6]);
        w.tensor("y", &[5], GgmlType::F32, (0..20).collect());
        let bytes = w.to_bytes();
        let file = parse_complete(&bytes).unwrap();
        assert_eq!(file.alignment, a as u64);
        assert_eq!(file.data_offset % a as u64, 0);
        for t in &file.tensors {
            assert_eq!(t.offset % a as u64, 0, "tensor {} with alignment {a}", t.name);
        }
        assert_eq!(&bytes[file.tensors[0].offset as usize..][..6], &[1, 2, 3, 4, 5, 6]);
        assert_eq!(&bytes[file.tensors[1].offset as usize..][..20], &(0..20).collect::<Vec<u8>>()[..]);
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing from a prefix

#[test]
fn every_prefix_needs_more_until_complete() {
    let bytes = small_file();
    let len = bytes.len() as u64;
    let whole = parse_complete(&bytes).unwrap();
    let mut first_complete = None;
    for k in 0..=bytes.len() {
        match parse(&bytes[..k], len).unwrap() {
            Parsed::NeedMore { needed } => {
                assert!(first_complete.is_none(), "prefix {k} needs more after a shorter one was complete");
                assert!(needed > k as u64 && needed <= len, "prefix {k}: needed {needed} of {len}");
            }
            Parsed::Complete(file) => {
                first_complete.get_or_insert(k);
                assert_same(&file, &whole);
            }
        }
    }
    // Complete once the tensor infos are in, before any tensor data.
    assert!(first_complete.unwrap() as u64 <= whole.data_offset);

    // Following `needed` alone from nothing reaches the header, about one step per field.
    let (mut have, mut steps) = (0u64, 0);
    while let Parsed::NeedMore { needed } = parse(&bytes[..have as usize], len).unwrap() {
        assert!(needed > have);
        have = needed;
        steps += 1;
    }
    assert!(steps < 40, "{steps} steps");
}

#[test]
fn truncation_at_every_byte_is_an_error_not_a_panic() {
    let bytes = small_file();
    for cut in 0..bytes.len() {
        let r = parse(&bytes[..cut], cut as u64);
        match r {
            Err(GgufError::BadMagic { .. }) => assert!(cut < 4),
            Err(GgufError::Truncated { needed, file_len, .. }) => assert!(needed > file_len && file_len == cut as u64),
            Err(GgufError::TensorOutOfBounds { end, file_len, .. }) => assert!(end > file_len),
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
}

#[test]
fn tiny_llama3_fixture_parses() {
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny-llama3-q4km.gguf")).unwrap();
    let len = bytes.len() as u64;
    let file = parse_complete(&bytes).unwrap();
    assert_eq!(file.version, 3);
    assert_eq!(file.metadata.len(), 23);
    assert_eq!(file.get_str("general.architecture").unwrap(), Some("llama"));
    assert_eq!(file.get_int("llama.block_count").unwrap(), Some(2));
    assert_eq!(file.get_int("llama.embedding_length").unwrap(), Some(256));
    assert_eq!(file.get_int("llama.vocab_size").unwrap(), Some(128_256));
    assert_eq!(file.get_array("tokenizer.ggml.tokens").unwrap().map(Array::len), Some(128_256));
    assert_eq!(file.get_array("tokenizer.ggml.merges").unwrap().map(Array::len), Some(280_147));

    let count = |ty| file.tensors.iter().filter(|t| t.ty == ty).count();
    assert_eq!(file.tensors.len(), 20);
    assert_eq!((count(GgmlType::Q4_K), count(GgmlType::Q6_K), count(GgmlType::F32)), (13, 2, 5));
    let embd = file.tensor("token_embd.weight").unwrap();
    assert_eq!((embd.dims.clone(), embd.ty, embd.size), (vec![256, 128_256], GgmlType::Q4_K, 128_256 * 144));
    assert_eq!(file.tensor("blk.1.ffn_down.weight").unwrap().ty, GgmlType::Q6_K);
    assert!(file.tensor("output.weight").is_none(), "the output head is tied to the embeddings");
    assert!(file.tensors.iter().all(|t| t.offset % file.alignment == 0 && t.end() <= len));
    assert_eq!(file.tensors.iter().map(|t| t.end()).max(), Some(len));

    // The streaming way, as the loader does it: a 1 MiB first read, then at least double.
    let mut have = 1 << 20;
    let streamed = loop {
        match parse(&bytes[..have], len).unwrap() {
            Parsed::NeedMore { needed } => {
                assert!(needed > have as u64 && needed <= len);
                have = (needed as usize).max(have * 2).min(bytes.len());
            }
            Parsed::Complete(f) => break f,
        }
    };
    assert_same(&streamed, &file);
}

// ---------------------------------------------------------------------------------------------
// Hostile headers: each names its problem

#[test]
fn wrong_magic() {
    let mut bytes = small_file();
    bytes[..4].copy_from_slice(b"GGML");
    assert_eq!(err(&bytes), GgufError::BadMagic { found: b"GGML".to_vec() });
    // Too short to hold a magic at all: the whole file is shown, once we have all of it.
    assert_eq!(err(b"GG"), GgufError::BadMagic { found: b"GG".to_vec() });
    assert_eq!(err(b""), GgufError::BadMagic { found: vec![] });
    assert!(matches!(parse(b"G", 2), Ok(Parsed::NeedMore { needed: 2 })));
}

#[test]
fn unknown_version() {
    for v in [0, 1, 4, u32::MAX] {
        assert_eq!(err(&Raw::new(v, 0, 0).data(0)), GgufError::UnsupportedVersion(v));
    }
    assert!(parse_complete(&Raw::new(2, 0, 0).data(0)).is_ok(), "version 2 is read like 3");
}

#[test]
fn truncated_header() {
    let bytes = Raw::new(3, 0, 1).kv_u32("k", 7).data(0);
    // Cut inside the metadata count, and inside the value.
    assert_eq!(
        err(&bytes[..20]),
        GgufError::Truncated { what: "metadata count".into(), needed: 24, file_len: 20 }
    );
    let cut = 24 + 8 + 1 + 4 + 2;
    assert!(matches!(err(&bytes[..cut]), GgufError::Truncated { needed: 41, .. }));
}

#[test]
fn absurd_metadata_and_tensor_counts() {
    let e = err(&Raw::new(3, 0, 1 << 60).data(0));
    assert!(matches!(&e, GgufError::Truncated { what, .. } if what.contains("metadata entries")), "{e}");
    assert!(matches!(err(&Raw::new(3, 0, u64::MAX).data(0)), GgufError::Overflow { .. }));
    assert!(matches!(err(&Raw::new(3, 1 << 40, 0).data(0)), GgufError::Truncated { .. }));
    assert!(matches!(err(&Raw::new(3, 1 << 60, 0).data(0)), GgufError::Overflow { .. }));
    // A huge file can hold the count, but not in a header of sane size.
    let head = Raw::new(3, 0, 1 << 32).0;
    assert!(matches!(parse(&head, 1 << 50), Err(GgufError::HeaderTooLarge { .. })));
}

#[test]
fn array_of_2_pow_60_elements_fails_without_allocating() {
    let array = |elem: u32, count: u64| Raw::new(3, 0, 1).str(b"big").u32(ARRAY).u32(elem).u64(count).data(64);
    assert!(matches!(err(&array(U8, 1 << 60)), GgufError::Truncated { .. }));
    assert!(matches!(err(&array(U64, 1 << 60)), GgufError::Truncated { .. }));
    assert!(matches!(err(&array(ARRAY, 1 << 60)), GgufError::Truncated { .. }));
    // 2^61 strings of at least 8 bytes each is more bytes than u64 counts.
    assert!(matches!(err(&array(STRING, 1 << 61)), GgufError::Overflow { .. }));
    // Even a file that claims to be big enough is refused before anything is reserved.
    let bytes = array(U8, 1 << 60);
    assert!(matches!(parse(&bytes, u64::MAX), Err(GgufError::HeaderTooLarge { .. })));
    let bytes = array(STRING, 1 << 58);
    assert!(matches!(parse(&bytes, u64::MAX), Err(GgufError::HeaderTooLarge { .. })));
}

#[test]
fn string_of_2_pow_62_bytes_fails_without_allocating() {
    // As a key, as a value, and as a tensor name.
    let key = Raw::new(3, 0, 1).u64(1 << 62).bytes(b"k").data(64);
    assert!(matches!(err(&key), GgufError::Truncated { .. }));
    assert!(matches!(parse(&key, u64::MAX), Err(GgufError::HeaderTooLarge { .. })));
    let value = Raw::new(3, 0, 1).str(b"k").u32(STRING).u64(1 << 62).data(64);
    assert!(matches!(err(&value), GgufError::Truncated { .. }));
    let name = Raw::new(3, 1, 0).u64(1 << 62).data(64);
    assert!(matches!(err(&name), GgufError::Truncated { .. }));
    // A length that wraps around u64 when added to the position.
    let wraps = Raw::new(3, 0, 1).str(b"k").u32(STRING).u64(u64::MAX).data(64);
    assert!(matches!(err(&wraps), GgufError::Overflow { .. }));
}

#[test]
fn deeply_nested_arrays() {
    let nest = |levels: usize| {
        let mut a = Array::U8(vec![1]);
        for _ in 1..levels {
            a = Array::Array(vec![a]);
        }
        let mut w = GgufWriter::new();
        w.meta("deep", Value::Array(a));
        w.to_bytes()
    };
    assert!(parse_complete(&nest(MAX_ARRAY_DEPTH as usize)).is_ok());
    assert_eq!(err(&nest(MAX_ARRAY_DEPTH as usize + 1)), GgufError::NestingTooDeep { key: "deep".into() });

    // A million levels by hand: refused at the limit, long before the stack runs out.
    let mut raw = Raw::new(3, 0, 1).str(b"deep").u32(ARRAY);
    for _ in 0..1_000_000 {
        raw = raw.u32(ARRAY).u64(1);
    }
    assert_eq!(err(&raw.data(0)), GgufError::NestingTooDeep { key: "deep".into() });
}

#[test]
fn unknown_value_types() {
    let scalar = Raw::new(3, 0, 1).str(b"k").u32(13).u32(0).data(0);
    assert_eq!(err(&scalar), GgufError::UnknownValueType { key: "k".into(), type_id: 13 });
    let element = Raw::new(3, 0, 1).str(b"k").u32(ARRAY).u32(0xFFFF).u64(1).u32(0).data(0);
    assert_eq!(err(&element), GgufError::UnknownValueType { key: "k".into(), type_id: 0xFFFF });
    let inner = Raw::new(3, 0, 1).str(b"k").u32(ARRAY).u32(ARRAY).u64(1).u32(99).u64(0).data(0);
    assert_eq!(err(&inner), GgufError::UnknownValueType { key: "k".into(), type_id: 99 });
}

#[test]
fn unknown_and_unsupported_tensor_types() {
    let unknown = Raw::new(3, 1, 0).tensor(b"t", &[32], 1000, 0).data(128);
    assert_eq!(err(&unknown), GgufError::UnknownTensorType { tensor: "t".into(), type_id: 1000 });
    let q2_k = Raw::new(3, 1, 0).tensor(b"t", &[256], 10, 0).data(128);
    assert_eq!(err(&q2_k), GgufError::UnsupportedTensorType { tensor: "t".into(), ty: GgmlType(10) });
}

#[test]
fn tensor_past_the_end_of_the_file() {
    // 8 F32s need 32 bytes; the file holds 16 after the header.
    let short = Raw::new(3, 1, 0).tensor(b"t", &[8], 0, 0).data(16);
    let e = err(&short);
    assert!(matches!(&e, GgufError::TensorOutOfBounds { tensor, end, file_len } if tensor == "t" && end - file_len == 16), "{e}");
    let far = Raw::new(3, 1, 0).tensor(b"t", &[8], 0, 1 << 40).data(32);
    assert!(matches!(err(&far), GgufError::TensorOutOfBounds { .. }));
}

#[test]
fn tensor_extents_overflowing_u64() {
    let overflow = |dims: &[u64], ty: u32, rel: u64| {
        let e = err(&Raw::new(3, 1, 0).tensor(b"t", dims, ty, rel).data(64));
        assert!(matches!(&e, GgufError::Overflow { what } if what.contains("\"t\"")), "{dims:?} at {rel}: {e}");
    };
    overflow(&[1 << 32, 1 << 32, 2], 0, 0); // element count
    overflow(&[1 << 62], 0, 0); // bytes of 2^62 F32s
    overflow(&[8], 0, u64::MAX - 31); // data offset + relative offset
    // Start fits u64, end does not: with one 64-byte tensor info the data starts at 64.
    overflow(&[16], 0, u64::MAX - 31 - 64);
}

#[test]
fn duplicate_names() {
    let tensors = Raw::new(3, 2, 0).tensor(b"w", &[8], 0, 0).tensor(b"w", &[8], 0, 32).data(64);
    assert_eq!(err(&tensors), GgufError::DuplicateTensor("w".into()));
    let keys = Raw::new(3, 0, 2).kv_u32("k", 1).kv_u32("k", 2).data(0);
    assert_eq!(err(&keys), GgufError::DuplicateKey("k".into()));
}

#[test]
fn overlapping_tensors() {
    // Overlapping tensors would let a header describe more data than the file holds.
    let bytes = Raw::new(3, 3, 0).tensor(b"a", &[8], 0, 64).tensor(b"b", &[24], 0, 0).tensor(b"c", &[8], 0, 96).data(128);
    assert_eq!(err(&bytes), GgufError::TensorOverlap { first: "b".into(), second: "a".into() });
    let touching = Raw::new(3, 2, 0).tensor(b"a", &[8], 0, 0).tensor(b"b", &[8], 0, 32).data(64);
    assert!(parse_complete(&touching).is_ok());
}

#[test]
fn zero_and_bad_alignment() {
    let with = |v: Value| {
        let mut w = GgufWriter::new();
        w.meta("general.alignment", v);
        err(&w.to_bytes())
    };
    assert_eq!(with(Value::U32(0)), GgufError::BadAlignment(0));
    assert_eq!(with(Value::U32(12)), GgufError::BadAlignment(12));
    assert_eq!(with(Value::I64(-8)), GgufError::BadAlignment(-8));
    assert_eq!(with(Value::String("32".into())), GgufError::WrongType { key: "general.alignment".into(), expected: "an integer" });
}

#[test]
fn non_utf8_strings() {
    let bad = b"ok\xff";
    let cases = [
        (Raw::new(3, 0, 1).str(bad).u32(U8).u32(0).data(0), "metadata key #0"),
        (Raw::new(3, 0, 1).str(b"k").u32(STRING).str(bad).data(0), "value of metadata key \"k\""),
        (Raw::new(3, 0, 1).str(b"k").u32(ARRAY).u32(STRING).u64(2).str(b"x").str(bad).data(0), "element 1 of metadata key \"k\""),
        (Raw::new(3, 1, 0).tensor(bad, &[8], 0, 0).data(32), "name of tensor #0"),
    ];
    for (bytes, what) in cases {
        assert_eq!(err(&bytes), GgufError::NonUtf8 { what: what.into() });
    }
}

#[test]
fn bad_tensor_shapes() {
    let shape = |dims: &[u64], ty: u32, rel: u64| err(&Raw::new(3, 1, 0).tensor(b"t", dims, ty, rel).data(256));
    assert_eq!(shape(&[], 0, 0), GgufError::BadDimCount { tensor: "t".into(), n_dims: 0 });
    assert_eq!(shape(&[1; 5], 0, 0), GgufError::BadDimCount { tensor: "t".into(), n_dims: 5 });
    assert_eq!(shape(&[4, 0], 0, 0), GgufError::ZeroDim { tensor: "t".into(), dims: vec![4, 0] });
    let q4_0 = GgmlType::Q4_0;
    assert_eq!(shape(&[16], q4_0.0, 0), GgufError::NotWholeBlocks { tensor: "t".into(), ty: q4_0, ne0: 16 });
    assert_eq!(shape(&[8], 0, 8), GgufError::Misaligned { tensor: "t".into(), offset: 8, alignment: 32 });
}

// ---------------------------------------------------------------------------------------------
// Fuzzing seeds

/// A one-layer Llama small enough to be a fuzzing seed, yet complete enough for `LlamaConfig`.
fn micro_llama() -> Vec<u8> {
    let (d, f, kv, vocab) = (8u64, 16u64, 4u64, 4u64);
    let mut w = GgufWriter::new();
    w.meta("general.architecture", Value::String("llama".into()));
    for (k, v) in [("block_count", 1), ("embedding_length", d), ("feed_forward_length", f), ("context_length", 64)] {
        w.meta(&format!("llama.{k}"), Value::U32(v as u32));
    }
    w.meta("llama.attention.head_count", Value::U32(2));
    w.meta("llama.attention.head_count_kv", Value::U32(1));
    w.meta("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5));
    w.meta("tokenizer.ggml.tokens", Value::Array(Array::String(["<s>", "</s>", "a", "b"].map(String::from).to_vec())));
    let mut f32s = |name: &str, dims: &[u64]| {
        let n: u64 = dims.iter().product();
        w.tensor(name, dims, GgmlType::F32, (0..n * 4).map(|i| (i % 251) as u8).collect());
    };
    f32s("token_embd.weight", &[d, vocab]);
    f32s("output_norm.weight", &[d]);
    for (name, dims) in [
        ("attn_norm", vec![d]),
        ("attn_q", vec![d, d]),
        ("attn_k", vec![d, kv]),
        ("attn_v", vec![d, kv]),
        ("attn_output", vec![d, d]),
        ("ffn_norm", vec![d]),
        ("ffn_gate", vec![d, f]),
        ("ffn_up", vec![d, f]),
        ("ffn_down", vec![f, d]),
    ] {
        f32s(&format!("blk.0.{name}.weight"), &dims);
    }
    w.to_bytes()
}

/// The seeds in fuzz/seeds come from here: `HEARTH_FUZZ_SEEDS=fuzz/seeds cargo test --test gguf
/// fuzz_seeds`. Without the variable it only checks that every seed is a valid, small file.
#[test]
fn fuzz_seeds() {
    let mut aligned = GgufWriter::new();
    aligned.meta("general.alignment", Value::U32(8));
    aligned.meta("nested", Value::Array(Array::Array(vec![Array::U16(vec![1]), Array::Bool(vec![true])])));
    aligned.tensor("x", &[3], GgmlType::F16, vec![1, 2, 3, 4, 5, 6]);
    aligned.tensor("q", &[32], GgmlType::Q4_0, vec![7; 18]);
    let mut k_quants = GgufWriter::new();
    for ty in [GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::BF16] {
        let (block, bytes) = ty.block_layout().unwrap();
        k_quants.tensor(&format!("t.{ty}"), &[block], ty, vec![ty.0 as u8; bytes as usize]);
    }
    let seeds = [("small", small_file()), ("aligned8", aligned.to_bytes()), ("k_quants", k_quants.to_bytes()), ("micro_llama", micro_llama())];

    let file = parse_complete(&seeds[3].1).unwrap();
    let cfg = LlamaConfig::from_gguf(&file).unwrap();
    assert_eq!((cfg.n_layers, cfg.dim, cfg.head_dim, cfg.vocab_size), (1, 8, 4, 4));
    for (name, bytes) in &seeds {
        parse_complete(bytes).unwrap_or_else(|e| panic!("seed {name}: {e}"));
        assert!(bytes.len() < 4096, "seed {name} is {} bytes", bytes.len());
    }
    if let Some(dir) = std::env::var_os("HEARTH_FUZZ_SEEDS") {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(format!("{name}.gguf")), bytes).unwrap();
        }
    }
}
