//! Every GPU kernel against a CPU reference on seeded random input (native wgpu; on a machine
//! without a GPU, Mesa's lavapipe). `quant::dequantize` is the reference for every weight type.
#![cfg(not(target_arch = "wasm32"))]

use half::{bf16, f16};
use hearth::gguf::{GgufWriter, TensorInfo};
use hearth::gpu::{Gpu, GpuBuffer, GpuError, GpuOptions, GpuTensor, GpuWeights, KvCache, Kernels, Rope, Sampler, Step, StepUniform, Tuning};
use hearth::model::loader::{stream_file, MemorySink, TensorSink};
use hearth::quant::{dequantize, GgmlType};
use hearth::sampling::SamplingParams;
use std::sync::OnceLock;

/// splitmix64: tiny, seeded, deterministic.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [lo, hi).
    fn f32(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f32(-1.0, 1.0)).collect()
    }
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    pollster::block_on(f)
}

fn make_gpu(opts: &GpuOptions) -> Gpu {
    match Gpu::new_blocking(opts) {
        Ok(gpu) => gpu,
        // Fail loudly: a machine without a GPU must install lavapipe, not skip the tests.
        Err(e) => panic!("GPU tests need a wgpu adapter: {e}"),
    }
}

/// One shared device and pipeline cache for the tests that use default limits.
fn kernels() -> &'static Kernels {
    static K: OnceLock<Kernels> = OnceLock::new();
    K.get_or_init(|| Kernels::new(&make_gpu(&GpuOptions::default())))
}

/// The kernel layout this adapter does not use by default (the GPU layout on lavapipe), so
/// both layouts are checked on any machine.
fn other_tuning() -> Tuning {
    match kernels().gpu.tuning {
        Tuning::Gpu => Tuning::Cpu,
        Tuning::Cpu => Tuning::Gpu,
    }
}

/// Kernels on a device laid out with [`other_tuning`].
fn other_kernels() -> &'static Kernels {
    static K: OnceLock<Kernels> = OnceLock::new();
    K.get_or_init(|| Kernels::new(&make_gpu(&GpuOptions { tuning: Some(other_tuning()), ..Default::default() })))
}

/// A small f16 scale that is normal (not subnormal), either sign.
fn small_f16(rng: &mut Rng) -> [u8; 2] {
    let mag = rng.f32(0.001, 0.05);
    let v = if rng.next() & 1 == 0 { mag } else { -mag };
    f16::from_f32(v).to_le_bytes()
}

/// `rows` rows of `row_len` values of type `ty`: random bytes (valid for every quant), with
/// the f16 scale fields set to small finite values and float types to values in [-1, 1).
fn random_tensor(ty: GgmlType, rows: usize, row_len: usize, rng: &mut Rng) -> Vec<u8> {
    let (block, bytes) = ty.block_layout().unwrap();
    let n_blocks = rows * row_len / block as usize;
    let mut out: Vec<u8> = (0..n_blocks * bytes as usize).map(|_| rng.next() as u8).collect();
    for b in out.chunks_exact_mut(bytes as usize) {
        match ty {
            GgmlType::F32 => b.copy_from_slice(&rng.f32(-1.0, 1.0).to_le_bytes()),
            GgmlType::F16 => b.copy_from_slice(&f16::from_f32(rng.f32(-1.0, 1.0)).to_le_bytes()),
            GgmlType::BF16 => b.copy_from_slice(&bf16::from_f32(rng.f32(-1.0, 1.0)).to_le_bytes()),
            GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => b[0..2].copy_from_slice(&small_f16(rng)),
            GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => {
                b[0..2].copy_from_slice(&small_f16(rng));
                b[2..4].copy_from_slice(&small_f16(rng));
            }
            GgmlType::Q6_K => b[208..210].copy_from_slice(&small_f16(rng)),
            _ => unreachable!(),
        }
    }
    out
}

fn info(name: &str, ty: GgmlType, row_len: usize, rows: usize) -> TensorInfo {
    let size = ty.bytes_for((row_len * rows) as u64).unwrap();
    TensorInfo { name: name.into(), dims: vec![row_len as u64, rows as u64], ty, offset: 0, size }
}

/// Upload tensors through the TensorSink in pieces of random length (1 byte to 2 MiB).
fn upload(gpu: &Gpu, tensors: &[(TensorInfo, &[u8])], rng: &mut Rng) -> GpuWeights {
    let infos: Vec<_> = tensors.iter().map(|(i, _)| i.clone()).collect();
    let mut w = block_on(GpuWeights::for_tensors(gpu, &infos)).unwrap();
    for (idx, (_, bytes)) in tensors.iter().enumerate() {
        let mut at = 0;
        while at < bytes.len() {
            let len = match rng.below(4) {
                0 => 1 + rng.below(3) as usize,
                1 => 1 + rng.below(5000) as usize,
                _ => 1 + rng.below(2 << 20) as usize,
            }
            .min(bytes.len() - at);
            w.write(idx, at as u64, &bytes[at..at + len]).unwrap();
            at += len;
        }
    }
    block_on(w.finish()).unwrap();
    w
}

fn dequant_rows(ty: GgmlType, bytes: &[u8], row_len: usize) -> Vec<f32> {
    let mut out = vec![0f32; bytes.len() / ty.bytes_for(row_len as u64).unwrap() as usize * row_len];
    dequantize(ty, bytes, &mut out);
    out
}

/// |got - want| <= tol * scale for each element, where scale is the sum of |terms| (so
/// cancellation in a dot product does not demand impossible relative accuracy).
fn assert_close(what: &str, got: &[f32], want: &[f64], scale: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, ((&g, &w), &s)) in got.iter().zip(want).zip(scale).enumerate() {
        let err = (g as f64 - w).abs();
        assert!(err <= tol * s.max(1e-30) + 1e-30, "{what}[{i}]: got {g}, want {w} (err {err:e}, scale {s:e})");
    }
}

fn read_f32(gpu: &Gpu, b: &GpuBuffer) -> Vec<f32> {
    block_on(b.read_f32(gpu)).unwrap()
}

/// CPU reference for Y[t, r] = dot(W[r, :], X[t, :]), with the sum of |terms| per output.
fn ref_matmul(w: &[f32], x: &[f32], rows: usize, row_len: usize, t: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut y, mut s) = (vec![0.0; t * rows], vec![0.0; t * rows]);
    for ti in 0..t {
        for r in 0..rows {
            for i in 0..row_len {
                let p = w[r * row_len + i] as f64 * x[ti * row_len + i] as f64;
                y[ti * rows + r] += p;
                s[ti * rows + r] += p.abs();
            }
        }
    }
    (y, s)
}

/// Run matvec (t = None) or matmul over `tensor`, compare to the CPU.
fn check_matmul(k: &Kernels, w: &GpuTensor, bytes: &[u8], t: Option<usize>, rng: &mut Rng) {
    let gpu = &k.gpu;
    let (rows, row_len, n) = (w.rows as usize, w.row_len as usize, t.unwrap_or(1));
    let xv = rng.vec(n * row_len);
    let x = GpuBuffer::from_f32(gpu, &xv, "x").unwrap();
    let y = GpuBuffer::new(gpu, (n * rows) as u64, "y").unwrap();
    let op = match t {
        None => block_on(k.matvec(w, &x, &y)),
        Some(t) => block_on(k.matmul(w, &x, &y, t as u64)),
    }
    .unwrap();
    block_on(k.run(&[&op])).unwrap();
    let (want, scale) = ref_matmul(&dequant_rows(w.ty, bytes, row_len), &xv, rows, row_len, n);
    assert_close(&format!("{} {} x{n}", op.name, w.ty), &read_f32(gpu, &y), &want, &scale, 1e-4);
}

#[test]
fn device_report_and_limits() {
    let gpu = &kernels().gpu;
    let report = serde_json::to_string(&gpu.report()).unwrap();
    eprintln!("{report}");
    assert!(gpu.binding_limit() >= 1 << 20 && gpu.binding_limit().is_multiple_of(4));
    assert!(gpu.max_workgroups_per_dim() >= 65535);
}

#[test]
fn validation_errors_come_back_as_gpu_errors() {
    let gpu = &kernels().gpu;
    let scope = gpu.scope();
    // MAP_READ may only be combined with COPY_DST: a validation error, not a panic.
    let _bad = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("bad"),
        size: 16,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let err = block_on(scope.check("creating a bad buffer")).unwrap_err();
    assert!(matches!(err, GpuError::Validation { .. }), "{err}");
    // Shape errors are caught before the GPU sees anything.
    let (x, y) = (GpuBuffer::new(gpu, 10, "x").unwrap(), GpuBuffer::new(gpu, 4, "y").unwrap());
    let w = upload(gpu, &[(info("w", GgmlType::F32, 32, 4), &vec![0u8; 512])], &mut Rng(1));
    let err = block_on(kernels().matvec(w.get("w").unwrap(), &x, &y)).err().unwrap();
    assert!(matches!(err, GpuError::Shape { .. }), "{err}");
}

#[test]
fn matvec_and_matmul_every_type() {
    let mut rng = Rng(42);
    for (k, ty) in [kernels(), other_kernels()].into_iter().flat_map(|k| GgmlType::SUPPORTED.map(|ty| (k, ty))) {
        // Float rows that end inside a 32-value unit (x is read as vec4s: rows are multiples
        // of 4 values, as every model width is; embed_every_type covers odd lengths).
        let lens: &[usize] = if ty.block_layout().unwrap().0 == 1 { &[512, 44] } else { &[512] };
        for &row_len in lens {
            let rows = 37;
            let bytes = random_tensor(ty, rows, row_len, &mut rng);
            let w = upload(&k.gpu, &[(info("w", ty, row_len, rows), &bytes)], &mut rng);
            let w = w.get("w").unwrap();
            check_matmul(k, w, &bytes, None, &mut rng);
            check_matmul(k, w, &bytes, Some(11), &mut rng);
        }
    }
}

#[test]
fn row_split_upload_matvec_and_embed() {
    // ~1 MB bindings and 1000-wide grids: tensors split into parts whose boundaries are not
    // word-aligned (29411 rows of 34 bytes), and 2-D dispatch grids.
    for tuning in [kernels().gpu.tuning, other_tuning()] {
        row_split_case(tuning);
    }
}

fn row_split_case(tuning: Tuning) {
    let opts = GpuOptions { max_binding_bytes: Some(1_000_000), max_workgroups_per_dim: Some(1000), tuning: Some(tuning), ..Default::default() };
    let gpu = make_gpu(&opts);
    let k = Kernels::new(&gpu);
    let mut rng = Rng(7);
    let cases = [(GgmlType::Q8_0, 32, 40_000), (GgmlType::Q6_K, 256, 5_000), (GgmlType::Q4_K, 512, 4_000)];
    let data: Vec<_> = cases.iter().map(|&(ty, len, rows)| (info(&format!("{ty}"), ty, len, rows), random_tensor(ty, rows, len, &mut rng))).collect();
    let pairs: Vec<_> = data.iter().map(|(i, b)| (i.clone(), b.as_slice())).collect();
    let weights = upload(&gpu, &pairs, &mut rng);
    let file_bytes: u64 = data.iter().map(|(i, _)| i.size).sum();
    assert!(weights.gpu_bytes() >= file_bytes && weights.gpu_bytes() as f64 <= 1.1 * file_bytes as f64);

    for (info, bytes) in &data {
        let w = weights.get(&info.name).unwrap();
        assert!(w.parts.len() >= 2, "{} should be split", info.name);
        // The parts hold the file's bytes exactly.
        let mut at = 0usize;
        for p in &w.parts {
            let n = (p.rows * w.row_bytes) as usize;
            assert_eq!(block_on(gpu.read_bytes(&p.buffer, 0, n as u64)).unwrap(), &bytes[at..at + n], "{} part", info.name);
            at += n;
        }
        check_matmul(&k, w, bytes, None, &mut rng);
        check_matmul(&k, w, bytes, Some(3), &mut rng);

        // Embedding rows from every part (the ids are read on the GPU).
        let ids: Vec<u32> = vec![9, 0, (w.rows - 1) as u32, (w.rows / 2) as u32, w.rows_per_part as u32, 1];
        let ids_buf = GpuBuffer::from_u32(&gpu, &ids, "ids").unwrap();
        let (t, row_len) = (ids.len() - 1, w.row_len as usize);
        let out = GpuBuffer::new(&gpu, (t * row_len) as u64, "out").unwrap();
        let op = block_on(k.embed(w, &ids_buf, 1, t as u64, &out)).unwrap();
        block_on(k.run(&[&op])).unwrap();
        let got = read_f32(&gpu, &out);
        let rb = w.row_bytes as usize;
        for (ti, &id) in ids[1..].iter().enumerate() {
            let want = dequant_rows(w.ty, &bytes[id as usize * rb..(id as usize + 1) * rb], row_len);
            let want64: Vec<f64> = want.iter().map(|&v| v as f64).collect();
            let scale: Vec<f64> = want.iter().map(|v| v.abs() as f64 + 1e-6).collect();
            assert_close(&format!("embed {} id {id}", w.ty), &got[ti * row_len..(ti + 1) * row_len], &want64, &scale, 1e-6);
        }
    }
}

#[test]
fn output_head_over_65535_rows() {
    // Like Llama 3's 128256-row head: more rows than one dispatch dimension allows.
    let k = kernels();
    let mut rng = Rng(3);
    let (rows, row_len) = (70_000, 32);
    let bytes = random_tensor(GgmlType::Q4_0, rows, row_len, &mut rng);
    let w = upload(&k.gpu, &[(info("output.weight", GgmlType::Q4_0, row_len, rows), &bytes)], &mut rng);
    check_matmul(k, w.get("output.weight").unwrap(), &bytes, None, &mut rng);
}

#[test]
fn embed_every_type() {
    let k = kernels();
    let mut rng = Rng(5);
    for ty in GgmlType::SUPPORTED {
        let row_len = if ty.block_layout().unwrap().0 == 1 { 77 } else { 256 };
        let rows = 10;
        let bytes = random_tensor(ty, rows, row_len, &mut rng);
        let w = upload(&k.gpu, &[(info("e", ty, row_len, rows), &bytes)], &mut rng);
        let ids = GpuBuffer::from_u32(&k.gpu, &[3, 9, 0], "ids").unwrap();
        let out = GpuBuffer::new(&k.gpu, 3 * row_len as u64, "out").unwrap();
        let op = block_on(k.embed(w.get("e").unwrap(), &ids, 0, 3, &out)).unwrap();
        block_on(k.run(&[&op])).unwrap();
        let all = dequant_rows(ty, &bytes, row_len);
        let want: Vec<f64> = [3, 9, 0].iter().flat_map(|&r| all[r * row_len..(r + 1) * row_len].iter().map(|&v| v as f64)).collect();
        let scale: Vec<f64> = want.iter().map(|v| v.abs() + 1e-6).collect();
        assert_close(&format!("embed {ty}"), &read_f32(&k.gpu, &out), &want, &scale, 1e-6);
    }
}

#[test]
fn weights_stream_from_a_gguf_file() {
    // The real loading path: GgufWriter -> stream_file (tiny chunks) -> GpuWeights.
    let k = kernels();
    let mut rng = Rng(11);
    let a = random_tensor(GgmlType::Q5_0, 6, 64, &mut rng);
    let b = random_tensor(GgmlType::F32, 1, 13, &mut rng);
    let mut wr = GgufWriter::new();
    wr.tensor("a", &[64, 6], GgmlType::Q5_0, a.clone());
    wr.tensor("b", &[13], GgmlType::F32, b.clone());
    let file = wr.to_bytes();
    for chunk in [5usize, 1 << 20] {
        let header = hearth::gguf::parse_complete(&file).unwrap();
        let mut w = block_on(GpuWeights::new(&k.gpu, &header)).unwrap();
        stream_file(&mut &file[..], file.len() as u64, chunk, &mut w, |_, _| {}).unwrap();
        block_on(w.finish()).unwrap();
        for (name, bytes) in [("a", &a), ("b", &b)] {
            let t = w.get(name).unwrap();
            let got = block_on(k.gpu.read_bytes(&t.parts[0].buffer, 0, bytes.len() as u64)).unwrap();
            assert_eq!(&got, bytes, "tensor {name}, chunk {chunk}");
        }
        let mut mem = MemorySink::new(&header);
        stream_file(&mut &file[..], file.len() as u64, chunk, &mut mem, |_, _| {}).unwrap();
        assert_eq!(mem.tensors[0], a);
    }
}

#[test]
fn rms_norm_add_swiglu() {
    let k = kernels();
    let gpu = &k.gpu;
    let mut rng = Rng(13);
    let (n, rows, eps) = (1000usize, 3usize, 1e-5f32);
    let (xv, gv) = (rng.vec(n * rows), rng.vec(n));
    let gbytes: Vec<u8> = gv.iter().flat_map(|v| v.to_le_bytes()).collect();
    let w = upload(gpu, &[(TensorInfo { name: "norm".into(), dims: vec![n as u64], ty: GgmlType::F32, offset: 0, size: 4 * n as u64 }, &gbytes)], &mut rng);
    let x = GpuBuffer::from_f32(gpu, &xv, "x").unwrap();
    let y = GpuBuffer::new(gpu, (n * rows) as u64, "y").unwrap();
    let op = block_on(k.rms_norm(&x, w.get("norm").unwrap(), &y, n as u64, rows as u64, eps)).unwrap();
    block_on(k.run(&[&op])).unwrap();
    let mut want = vec![0f64; n * rows];
    for r in 0..rows {
        let row = &xv[r * n..(r + 1) * n];
        let ms = row.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / n as f64;
        let scale = 1.0 / (ms + eps as f64).sqrt();
        for i in 0..n {
            want[r * n + i] = row[i] as f64 * scale * gv[i] as f64;
        }
    }
    let tol: Vec<f64> = want.iter().map(|v| v.abs() + 1e-3).collect();
    assert_close("rms_norm", &read_f32(gpu, &y), &want, &tol, 1e-5);

    let (av, bv) = (rng.vec(n), rng.vec(n));
    let a = GpuBuffer::from_f32(gpu, &av, "a").unwrap();
    let b = GpuBuffer::from_f32(gpu, &bv, "b").unwrap();
    let add = block_on(k.add(&a, &b, n as u64)).unwrap();
    block_on(k.run(&[&add])).unwrap();
    let want: Vec<f64> = av.iter().zip(&bv).map(|(&a, &b)| (a + b) as f64).collect();
    assert_close("add", &read_f32(gpu, &a), &want, &vec![1.0; n], 0.0);

    let gate: Vec<f32> = rng.vec(n).iter().map(|v| v * 20.0).collect(); // reach silu's tails
    let g = GpuBuffer::from_f32(gpu, &gate, "gate").unwrap();
    let sw = block_on(k.swiglu(&g, &b, n as u64)).unwrap();
    block_on(k.run(&[&sw])).unwrap();
    let want: Vec<f64> = gate.iter().zip(&bv).map(|(&g, &u)| g as f64 / (1.0 + (-g as f64).exp()) * u as f64).collect();
    let tol: Vec<f64> = want.iter().map(|v| v.abs() + 1e-6).collect();
    assert_close("swiglu", &read_f32(gpu, &g), &want, &tol, 1e-5);
}

#[test]
fn rope_with_and_without_rope_freqs() {
    let k = kernels();
    let gpu = &k.gpu;
    let mut rng = Rng(17);
    let (heads, head_dim, rope_dim, base, t, pos) = (4usize, 64usize, 48usize, 500000f32, 3usize, 4093u32);
    let freqs: Vec<f32> = (0..rope_dim / 2).map(|_| rng.f32(1.0, 8.0)).collect();
    let fbytes: Vec<u8> = freqs.iter().flat_map(|v| v.to_le_bytes()).collect();
    let finfo = TensorInfo { name: "rope_freqs.weight".into(), dims: vec![rope_dim as u64 / 2], ty: GgmlType::F32, offset: 0, size: fbytes.len() as u64 };
    let w = upload(gpu, &[(finfo, &fbytes)], &mut rng);
    let step = StepUniform::new(gpu);
    step.write(gpu, Step { pos, ..Default::default() });
    for with_freqs in [false, true] {
        let rope = Rope::new(k, head_dim as u64, rope_dim as u64, base, with_freqs.then(|| w.get("rope_freqs.weight").unwrap())).unwrap();
        let xv = rng.vec(t * heads * head_dim);
        let x = GpuBuffer::from_f32(gpu, &xv, "q").unwrap();
        let op = block_on(k.rope(&rope, &x, heads as u64, &step, t as u64)).unwrap();
        block_on(k.run(&[&op])).unwrap();
        let mut want: Vec<f64> = xv.iter().map(|&v| v as f64).collect();
        for ti in 0..t {
            for h in 0..heads {
                for (i, &f) in freqs.iter().enumerate() {
                    // The kernel's definition, in f32 up to the angle; the angle's cos/sin in f64.
                    let inv = (base as f64).powf(-2.0 * i as f64 / rope_dim as f64) as f32;
                    let div = if with_freqs { f } else { 1.0 };
                    let theta = (((pos as usize + ti) as f32 * inv) / div) as f64;
                    let b = (ti * heads + h) * head_dim + 2 * i;
                    let (x0, x1) = (xv[b] as f64, xv[b + 1] as f64);
                    want[b] = x0 * theta.cos() - x1 * theta.sin();
                    want[b + 1] = x0 * theta.sin() + x1 * theta.cos();
                }
            }
        }
        assert_close(&format!("rope freqs={with_freqs}"), &read_f32(gpu, &x), &want, &vec![1.0; want.len()], 2e-6);
    }
}

#[test]
fn kv_append_and_attention_at_many_lengths() {
    let k = kernels();
    let gpu = &k.gpu;
    let mut rng = Rng(19);
    for &(heads, kv_heads, hd, ctx) in &[(8usize, 2usize, 64usize, 300usize), (4, 4, 128, 300), (6, 2, 200, 300), (2, 1, 64, 20_000)] {
        let cache = KvCache::new(gpu, 2, kv_heads as u64, hd as u64, ctx as u64).unwrap();
        // Fill layer 1: 300 positions through kv_append, 3 tokens at a time, the rest written
        // in the documented layout [kv_head][ctx][head_dim].
        let kv_dim = kv_heads * hd;
        let (kall, vall) = (rng.vec(ctx * kv_dim), rng.vec(ctx * kv_dim));
        let step = StepUniform::new(gpu);
        let (kb, vb) = (GpuBuffer::new(gpu, (3 * kv_dim) as u64, "k").unwrap(), GpuBuffer::new(gpu, (3 * kv_dim) as u64, "v").unwrap());
        let append = block_on(k.kv_append(&kb, &vb, &cache, 1, &step, 3)).unwrap();
        let (kc_buf, vc_buf) = &cache.layers[1];
        for p in 300..ctx {
            for h in 0..kv_heads {
                let at = ((h * ctx + p) * hd) as u64;
                kc_buf.write(gpu, at, bytemuck::cast_slice(&kall[p * kv_dim + h * hd..][..hd])).unwrap();
                vc_buf.write(gpu, at, bytemuck::cast_slice(&vall[p * kv_dim + h * hd..][..hd])).unwrap();
            }
        }
        for p0 in (0..300).step_by(3) {
            step.write(gpu, Step { pos: p0 as u32, ..Default::default() });
            kb.write(gpu, 0, bytemuck::cast_slice(&kall[p0 * kv_dim..(p0 + 3) * kv_dim])).unwrap();
            vb.write(gpu, 0, bytemuck::cast_slice(&vall[p0 * kv_dim..(p0 + 3) * kv_dim])).unwrap();
            block_on(k.run(&[&append])).unwrap();
        }
        let kc = read_f32(gpu, &cache.layers[1].0);
        for (p, i) in [(0, 0), (17, kv_dim - 1), (299, (hd + 3) % kv_dim)] {
            assert_eq!(kc[((i / hd) * ctx + p) * hd + i % hd], kall[p * kv_dim + i], "cache layout");
        }

        let t = 2;
        let q = GpuBuffer::new(gpu, (t * heads * hd) as u64, "q").unwrap();
        let out = GpuBuffer::new(gpu, (t * heads * hd) as u64, "out").unwrap();
        let op = block_on(k.attention(&q, &cache, 1, &out, heads as u64, &step, t as u64)).unwrap();
        // Tiles are 64 positions; chunks 256 (320 at ctx 20000: 63 chunks).
        for pos in [0usize, 1, 63, 64, 65, 130, 255, 256, 298, 1000, 19_998].into_iter().filter(|&p| p + 1 < ctx) {
            let qv: Vec<f32> = rng.vec(t * heads * hd).iter().map(|v| v * 3.0).collect();
            q.write(gpu, 0, bytemuck::cast_slice(&qv)).unwrap();
            step.write(gpu, Step { pos: pos as u32, ..Default::default() });
            block_on(k.run(&[&op])).unwrap();
            let mut want = vec![0f64; t * heads * hd];
            for ti in 0..t {
                for h in 0..heads {
                    let kvh = h / (heads / kv_heads);
                    let qh = &qv[(ti * heads + h) * hd..][..hd];
                    let n = pos + ti + 1;
                    let s: Vec<f64> = (0..n)
                        .map(|p| (0..hd).map(|d| qh[d] as f64 * kall[p * kv_dim + kvh * hd + d] as f64).sum::<f64>() / (hd as f64).sqrt())
                        .collect();
                    let m = s.iter().cloned().fold(f64::MIN, f64::max);
                    let e: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for d in 0..hd {
                        want[(ti * heads + h) * hd + d] = (0..n).map(|p| e[p] * vall[p * kv_dim + kvh * hd + d] as f64).sum::<f64>() / z;
                    }
                }
            }
            assert_close(&format!("attention {heads}/{kv_heads}x{hd} pos {pos}"), &read_f32(gpu, &out), &want, &vec![1.0; want.len()], 2e-5);
        }
    }
}

/// Run `op` once with `logits` uploaded and `rand_step`, returning the chosen token.
fn pick(k: &Kernels, op: &hearth::gpu::Op, logits_buf: &GpuBuffer, logits: &[f32], step: &StepUniform, rand_step: u32, out: &GpuBuffer) -> u32 {
    logits_buf.write(&k.gpu, 0, bytemuck::cast_slice(logits)).unwrap();
    step.write(&k.gpu, Step { rand_step, ..Default::default() });
    block_on(k.run(&[op])).unwrap();
    block_on(out.read_u32(&k.gpu)).unwrap()[0]
}

#[test]
fn argmax_ties_and_nan() {
    let k = kernels();
    let gpu = &k.gpu;
    let mut rng = Rng(23);
    let vocab = 128_256usize;
    let mut logits = rng.vec(vocab);
    logits[1000] = f32::NAN;
    logits[77_777] = 5.0;
    logits[99_999] = 5.0; // tie: the lower index wins
    let lb = GpuBuffer::from_f32(gpu, &logits, "logits").unwrap();
    let out = GpuBuffer::new(gpu, 1, "token").unwrap();
    let op = block_on(k.argmax(&lb, vocab as u64, &out)).unwrap();
    let step = StepUniform::new(gpu);
    assert_eq!(pick(k, &op, &lb, &logits, &step, 0, &out), 77_777);
    logits[5] = 6.0;
    assert_eq!(pick(k, &op, &lb, &logits, &step, 0, &out), 5);
}

#[test]
fn sampling_rules() {
    let k = kernels();
    let gpu = &k.gpu;
    let mut rng = Rng(29);
    let vocab = 5000usize;
    let lb = GpuBuffer::new(gpu, vocab as u64, "logits").unwrap();
    let out = GpuBuffer::new(gpu, 1, "token").unwrap();
    let step = StepUniform::new(gpu);
    let sampler = Sampler::new(gpu, vocab as u64, 8, &SamplingParams::greedy()).unwrap();
    let op = block_on(k.sample(&lb, &sampler, &step, &out)).unwrap();
    let mut run = |cfg: &SamplingParams, logits: &[f32], rand_step: u32| {
        sampler.set_config(gpu, cfg);
        pick(k, &op, &lb, logits, &step, rand_step, &out)
    };
    let logits: Vec<f32> = rng.vec(vocab).iter().map(|v| v * 4.0).collect();
    let best = (0..vocab).max_by(|&a, &b| logits[a].total_cmp(&logits[b]).then(b.cmp(&a))).unwrap() as u32;

    // Greedy and top-k = 1 are the argmax.
    assert_eq!(run(&SamplingParams::greedy(), &logits, 1), best);
    let top1 = SamplingParams { temperature: 1.0, top_k: 1, top_p: 1.0, min_p: 0.0, ..Default::default() };
    assert_eq!(run(&top1, &logits, 2), best);
    // Same seed and step: same token; different steps explore.
    let free = SamplingParams { temperature: 1.5, top_k: 0, top_p: 1.0, min_p: 0.0, seed: 1234, ..Default::default() };
    let a: Vec<u32> = (0..8).map(|s| run(&free, &logits, s)).collect();
    let b: Vec<u32> = (0..8).map(|s| run(&free, &logits, s)).collect();
    assert_eq!(a, b);
    assert!(a.iter().collect::<std::collections::HashSet<_>>().len() > 2, "{a:?}");

    // Crafted distribution: probabilities 0.5, 0.3, 0.15, then 0.05 spread over the rest.
    let mut crafted = vec![(0.05f32 / (vocab - 3) as f32).ln(); vocab];
    crafted[10] = 0.5f32.ln();
    crafted[20] = 0.3f32.ln();
    crafted[30] = 0.15f32.ln();
    let draws = |cfg: &SamplingParams, run: &mut dyn FnMut(&SamplingParams, &[f32], u32) -> u32| -> Vec<u32> { (0..60).map(|s| run(cfg, &crafted, s)).collect() };
    let base = SamplingParams { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, repeat_penalty: 1.0, seed: 99, ..Default::default() };
    // top-p 0.7 keeps {10, 20} (0.5 alone is not enough); top-p 0.85 adds 30.
    let d = draws(&SamplingParams { top_p: 0.7, ..base.clone() }, &mut run);
    assert!(d.iter().all(|t| [10, 20].contains(t)) && d.contains(&10) && d.contains(&20), "{d:?}");
    let d = draws(&SamplingParams { top_p: 0.85, ..base.clone() }, &mut run);
    assert!(d.iter().all(|t| [10, 20, 30].contains(t)) && d.contains(&30), "{d:?}");
    // min-p 0.25 keeps p >= 0.125: {10, 20, 30}; min-p 0.5 keeps {10, 20}.
    let d = draws(&SamplingParams { min_p: 0.25, ..base.clone() }, &mut run);
    assert!(d.iter().all(|t| [10, 20, 30].contains(t)) && d.contains(&30), "{d:?}");
    let d = draws(&SamplingParams { min_p: 0.5, ..base.clone() }, &mut run);
    assert!(d.iter().all(|t| [10, 20].contains(t)), "{d:?}");
    // top-k 2, and frequencies roughly follow the renormalised probabilities 5/8, 3/8.
    let d: Vec<u32> = (0..200).map(|s| run(&SamplingParams { top_k: 2, ..base.clone() }, &crafted, s)).collect();
    let tens = d.iter().filter(|&&t| t == 10).count() as f64 / 200.0;
    assert!(d.iter().all(|t| [10, 20].contains(t)) && (tens - 0.625).abs() < 0.1, "{tens}");
    // Without filters the tail (5% of the mass) shows up.
    let d: Vec<u32> = (0..200).map(|s| run(&base, &crafted, s)).collect();
    assert!(d.iter().any(|t| ![10, 20, 30].contains(t)));
}

#[test]
fn repetition_penalty_and_recent_ring() {
    let k = kernels();
    let gpu = &k.gpu;
    let vocab = 100usize;
    let lb = GpuBuffer::new(gpu, vocab as u64, "logits").unwrap();
    let out = GpuBuffer::new(gpu, 1, "token").unwrap();
    let step = StepUniform::new(gpu);
    let cfg = SamplingParams { repeat_penalty: 1.5, ..SamplingParams::greedy() };
    let sampler = Sampler::new(gpu, vocab as u64, 4, &cfg).unwrap();
    let op = block_on(k.sample(&lb, &sampler, &step, &out)).unwrap();
    let mut logits = vec![0.0f32; vocab];
    logits[7] = 2.0;
    logits[8] = 1.5;
    logits[9] = -1.0;
    // 7 appears twice in the window but is penalised once: 2.0 / 1.5 = 1.33 < 1.5.
    sampler.set_recent(gpu, &[1, 7, 2, 7, 9]).unwrap(); // the window (4) drops the first
    assert_eq!(pick(k, &op, &lb, &logits, &step, 0, &out), 8);
    let after = read_f32(gpu, &lb);
    assert!((after[7] - 2.0 / 1.5).abs() < 1e-6 && (after[9] + 1.5).abs() < 1e-6 && after[1] == 0.0, "{:?}", &after[..10]);
    // The pick was pushed into the ring: count 6, slot 5 % 4 = 1.
    let ring = block_on(sampler.recent.read_u32(gpu)).unwrap();
    assert_eq!(ring, vec![6, 9, 8, 2, 7]);
}

/// The GPU and CPU samplers are one algorithm: with the same settings the tokens they can pick
/// are the same set. Temperatures other than 1 catch a filter judged after the temperature
/// (top-p and min-p are judged at temperature 1, as in llama.cpp), and a tie at the top-k
/// boundary catches tie handling. Each kept token has >= 5% probability, so 300 draws find it.
#[test]
fn gpu_and_cpu_samplers_keep_the_same_tokens() {
    use hearth::sampling::Sampler as CpuSampler;
    use std::collections::BTreeSet;
    let k = kernels();
    let gpu = &k.gpu;
    let vocab = 64usize;
    let lb = GpuBuffer::new(gpu, vocab as u64, "logits").unwrap();
    let out = GpuBuffer::new(gpu, 1, "token").unwrap();
    let step = StepUniform::new(gpu);
    let sampler = Sampler::new(gpu, vocab as u64, 8, &SamplingParams::greedy()).unwrap();
    let op = block_on(k.sample(&lb, &sampler, &step, &out)).unwrap();

    // Probabilities at temperature 1: 0.40 0.24 0.16 0.09 0.05 0.03 at scattered ids (so
    // the GPU's id-order walk differs from the CPU's), 0.03 spread over the other 58.
    let mut crafted = vec![(0.03f32 / 58.0).ln(); vocab];
    for (id, p) in [(41, 0.40f32), (7, 0.24), (60, 0.16), (3, 0.09), (22, 0.05), (50, 0.03)] {
        crafted[id] = p.ln();
    }
    let mut tied = crafted.clone();
    tied[3] = tied[60]; // the 3rd and 4th most likely tie at the top-k 3 boundary
    let base = SamplingParams { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, repeat_penalty: 1.0, seed: 5, ..Default::default() };
    let cases: [(&str, &[f32], SamplingParams, &[u32]); 5] = [
        // At temperature 0.5 top-p 0.75 would stop at two tokens; at 1 it needs three.
        ("top-p, sharp", &crafted, SamplingParams { temperature: 0.5, top_p: 0.75, ..base.clone() }, &[7, 41, 60]),
        // At temperature 2 min-p 0.2 would also pass 0.05 and 0.03; at 1 it keeps w >= 0.08.
        ("min-p, flat", &crafted, SamplingParams { temperature: 2.0, min_p: 0.2, ..base.clone() }, &[3, 7, 41, 60]),
        ("top-k + top-p", &crafted, SamplingParams { temperature: 1.5, top_k: 5, top_p: 0.9, ..base.clone() }, &[3, 7, 41, 60]),
        ("top-k tie", &tied, SamplingParams { temperature: 0.7, top_k: 3, ..base.clone() }, &[3, 7, 41, 60]),
        ("all filters", &crafted, SamplingParams { temperature: 3.0, top_k: 40, top_p: 0.95, min_p: 0.1, ..base.clone() }, &[3, 7, 22, 41, 60]),
    ];
    for (what, logits, params, want) in cases {
        let want: BTreeSet<u32> = want.iter().copied().collect();
        let mut cpu = CpuSampler::new(params.clone());
        let cpu_set: BTreeSet<u32> = (0..300).map(|_| cpu.sample(&mut logits.to_vec())).collect();
        sampler.set_config(gpu, &params);
        let gpu_set: BTreeSet<u32> = (0..300).map(|s| pick(k, &op, &lb, logits, &step, s, &out)).collect();
        assert_eq!(cpu_set, want, "{what}: CPU");
        assert_eq!(gpu_set, want, "{what}: GPU");
    }

    // Greedy: penalty first, then the lowest index among equal logits, on both.
    let mut logits = vec![0.5f32; vocab];
    logits[9] = 2.0;
    logits[30] = 3.0; // 3.0 / 1.5 = 2.0 ties with id 9
    let params = SamplingParams { repeat_penalty: 1.5, ..SamplingParams::greedy() };
    let mut cpu = CpuSampler::new(params.clone());
    cpu.accept(30);
    sampler.set_config(gpu, &params);
    sampler.set_recent(gpu, &[30]).unwrap();
    assert_eq!(cpu.sample(&mut logits.clone()), 9);
    assert_eq!(pick(k, &op, &lb, &logits, &step, 0, &out), 9);
}

/// Not a test: `cargo test --release --test gpu_kernels -- --ignored --nocapture bench_matmul`
/// prints the time per token of matvec (decode) and matmul (prefill, 16 and 64 tokens) on the
/// shapes of SmolLM2-135M (576-wide, Q4_1, Q8_0 head) and Llama 3 8B (4096-wide Q4_K/Q6_K).
#[test]
#[ignore]
fn bench_matmul_per_token() {
    let k = kernels();
    let gpu = &k.gpu;
    let mut rng = Rng(37);
    let shapes = [
        (GgmlType::Q4_1, 576, 576),
        (GgmlType::Q4_1, 1536, 576),
        (GgmlType::Q4_1, 576, 1536),
        (GgmlType::Q8_0, 49152, 576),
        (GgmlType::Q4_K, 4096, 4096),
        (GgmlType::Q6_K, 1024, 4096),
        (GgmlType::Q4_K, 4096, 14336),
    ];
    for (ty, rows, row_len) in shapes {
        let bytes = random_tensor(ty, rows, row_len, &mut rng);
        let w = upload(gpu, &[(info("w", ty, row_len, rows), &bytes)], &mut rng);
        let w = w.get("w").unwrap();
        let mut line = format!("{ty} {rows}x{row_len}:");
        for t in [1usize, 16, 64] {
            let x = GpuBuffer::from_f32(gpu, &rng.vec(t * row_len), "x").unwrap();
            let y = GpuBuffer::new(gpu, (t * rows) as u64, "y").unwrap();
            let op = match t {
                1 => block_on(k.matvec(w, &x, &y)),
                _ => block_on(k.matmul(w, &x, &y, t as u64)),
            }
            .unwrap();
            // One warm-up run, then about a second's worth.
            let t0 = std::time::Instant::now();
            block_on(k.run(&[&op])).unwrap();
            let reps = ((1.0 / t0.elapsed().as_secs_f64()) as usize).clamp(1, 50);
            let t0 = std::time::Instant::now();
            block_on(k.run(&vec![&op; reps])).unwrap();
            let per_token = t0.elapsed().as_secs_f64() / (reps * t) as f64;
            line += &format!("  T={t}: {:.3} ms/token", per_token * 1e3);
        }
        eprintln!("{line}");
    }
}

/// Not a test: `cargo test --release --test gpu_kernels -- --ignored --nocapture bench` prints
/// the matvec's effective weight bandwidth and the sampler's time on this machine's adapter.
#[test]
#[ignore]
fn bench_matvec_and_sampling() {
    let k = kernels();
    let gpu = &k.gpu;
    let mut rng = Rng(31);
    for (ty, rows, row_len) in [(GgmlType::Q4_K, 4096, 4096), (GgmlType::Q6_K, 4096, 4096), (GgmlType::Q8_0, 4096, 4096), (GgmlType::F16, 2048, 4096)] {
        let bytes = random_tensor(ty, rows, row_len, &mut rng);
        let w = upload(gpu, &[(info("w", ty, row_len, rows), &bytes)], &mut rng);
        let x = GpuBuffer::from_f32(gpu, &rng.vec(row_len), "x").unwrap();
        let y = GpuBuffer::new(gpu, rows as u64, "y").unwrap();
        let op = block_on(k.matvec(w.get("w").unwrap(), &x, &y)).unwrap();
        block_on(k.run(&[&op])).unwrap();
        let reps = 20;
        let t0 = std::time::Instant::now();
        block_on(k.run(&vec![&op; reps])).unwrap();
        let s = t0.elapsed().as_secs_f64() / reps as f64;
        eprintln!("matvec {ty} {rows}x{row_len}: {:.3} ms, {:.2} GB/s of weights", s * 1e3, bytes.len() as f64 / s / 1e9);
    }
    let vocab = 128_256;
    let logits = GpuBuffer::from_f32(gpu, &rng.vec(vocab), "logits").unwrap();
    let out = GpuBuffer::new(gpu, 1, "token").unwrap();
    let step = StepUniform::new(gpu);
    for cfg in [SamplingParams::greedy(), SamplingParams::default(), SamplingParams { top_k: 0, ..SamplingParams::default() }] {
        let sampler = Sampler::new(gpu, vocab as u64, 64, &cfg).unwrap();
        let op = block_on(k.sample(&logits, &sampler, &step, &out)).unwrap();
        block_on(k.run(&[&op])).unwrap();
        let t0 = std::time::Instant::now();
        block_on(k.run(&[&op; 10])).unwrap();
        eprintln!("sample {cfg:?}: {:.3} ms", t0.elapsed().as_secs_f64() * 100.0);
    }
}
