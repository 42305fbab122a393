//! Argument parsing and the subcommands. Output contracts (JSON shapes, files) are relied on by
//! scripts outside the repository: change them only compatibly.

use clap::{Args, Parser, Subcommand, ValueEnum};
use hearth::chat::{ChatTemplate, Message};
use hearth::engine::{self, Backend, CpuBackend, EngineError};
use hearth::gpu::backend::GpuBackend;
use hearth::gpu::{Gpu, GpuOptions};
use hearth::sampling::Sampler;
use hearth::gguf::GgufFile;
use hearth::model::config::LlamaConfig;
use hearth::model::loader;
use hearth::model::reference::ReferenceModel;
use hearth::sampling::SamplingParams;
use hearth::tokenizer::Tokenizer;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

#[derive(Parser)]
#[command(name = "hearth", version, about = "Run Llama-family GGUF models on the GPU (wgpu) or the CPU reference.")]
#[command(after_help = "Examples:\n  hearth info models/SmolLM2-135M-Instruct.Q4_1.gguf\n  hearth generate MODEL --prompt \"What is the capital of France?\" --chat --temperature 0\n  hearth chat MODEL")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the model's hyper-parameters, tensor types and size as JSON.
    Info { model: PathBuf },
    /// Print the token ids of TEXT (or of each string of a JSON array file) as JSON.
    Tokenize {
        model: PathBuf,
        /// The text to tokenize; special-token text such as <|eot_id|> is parsed.
        text: Option<String>,
        /// A JSON array of strings; prints an array of id arrays.
        #[arg(long, conflicts_with = "text")]
        input: Option<PathBuf>,
        /// Prepend the BOS token.
        #[arg(long)]
        bos: bool,
    },
    /// Write the logits of every position (f32 little-endian, positions x vocab) to a file.
    Logits {
        model: PathBuf,
        /// Comma-separated token ids.
        #[arg(long, value_delimiter = ',', required = true)]
        tokens: Vec<u32>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value_t = Device::Cpu)]
        device: Device,
    },
    /// Generate a continuation of a prompt (or a chat reply with --chat), streamed to stdout.
    Generate(GenerateArgs),
    /// Chat interactively on stdin/stdout (an empty line or Ctrl-D ends, /reset starts over).
    Chat {
        model: PathBuf,
        #[arg(long)]
        system: Option<String>,
        #[command(flatten)]
        sampling: SamplingArgs,
        #[arg(long, default_value_t = 512)]
        max_tokens: usize,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Write a synthetic Llama GGUF: random but valid Q4_K/Q6_K blocks in llama.cpp's Q4_K_M
    /// arrangement, streamed to the file (the 8B shape is ~4.9 GB). For tests and full-size runs.
    Synth {
        out: PathBuf,
        #[arg(long, value_enum, default_value_t = Shape::Tiny)]
        shape: Shape,
        /// Copy the tokenizer (tokenizer.* keys) of this GGUF so the model can be prompted with
        /// text, e.g. tests/fixtures/tiny-llama3-q4km.gguf for Llama 3's. The tiny shape takes
        /// its vocabulary size; the 8B shape needs 128256 tokens.
        #[arg(long)]
        tokenizer_from: Option<PathBuf>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Measure load time, prefill and decode speed; with --json the last line is one JSON object.
    Bench {
        model: PathBuf,
        #[arg(long, default_value_t = 128)]
        prompt_tokens: usize,
        #[arg(long, default_value_t = 64)]
        gen_tokens: usize,
        #[arg(long)]
        json: bool,
        #[arg(long, value_enum, default_value_t = Device::Gpu)]
        device: Device,
    },
}

#[derive(Args)]
struct GenerateArgs {
    model: PathBuf,
    /// The prompt text.
    #[arg(long, required_unless_present = "tokens", conflicts_with = "tokens")]
    prompt: Option<String>,
    /// Wrap the prompt in the model's chat template as a user message.
    #[arg(long, requires = "prompt")]
    chat: bool,
    /// System message for --chat.
    #[arg(long, requires = "chat")]
    system: Option<String>,
    /// Comma-separated prompt token ids instead of text.
    #[arg(long, value_delimiter = ',')]
    tokens: Option<Vec<u32>>,
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// After the streamed text, print {"tokens": [...], "text": "..."} as the last line.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args)]
struct SamplingArgs {
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// 0 disables.
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    /// 1 disables.
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// 0 disables.
    #[arg(long, default_value_t = 0.05)]
    min_p: f32,
    /// 1 disables.
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl SamplingArgs {
    fn params(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            seed: self.seed,
            ..SamplingParams::default()
        }
    }
}

#[derive(Args)]
struct RunArgs {
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    device: Device,
    /// KV-cache length in tokens (default: the model's, at most 4096).
    #[arg(long)]
    context: Option<usize>,
}

/// Shapes `hearth synth` writes.
#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Shape {
    /// Llama 3 8B: 32 layers, dim 4096, FFN 14336, 32/8 heads, 128256 tokens.
    #[value(name = "llama3-8b")]
    Llama3_8b,
    /// 2 layers, dim 256: a few MB.
    Tiny,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Device {
    Cpu,
    Gpu,
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Info { model } => info(&model),
        Command::Tokenize { model, text, input, bos } => tokenize(&model, text, input, bos),
        Command::Logits { model, tokens, out, device } => logits(&model, &tokens, &out, device),
        Command::Generate(args) => generate(args),
        Command::Chat { model, system, sampling, max_tokens, run } => chat(&model, system, &sampling, max_tokens, &run),
        Command::Synth { out, shape, tokenizer_from, seed } => synth(&out, shape, tokenizer_from.as_deref(), seed),
        Command::Bench { model, prompt_tokens, gen_tokens, json, device } => bench(&model, prompt_tokens, gen_tokens, json, device),
    }
}

/// Read just the GGUF header (metadata and tensor infos) from a model file.
fn read_header(path: &Path) -> Result<GgufFile> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let len = f.metadata()?.len();
    let (header, _) = loader::read_header(&mut f, len).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(header)
}

fn info(path: &Path) -> Result<()> {
    let file = read_header(path)?;
    let arch = file.get_str("general.architecture")?.unwrap_or("unknown").to_string();
    let mut types: BTreeMap<String, usize> = BTreeMap::new();
    for t in &file.tensors {
        *types.entry(t.ty.to_string()).or_default() += 1;
    }
    let mut out = json!({
        "file": path.display().to_string(),
        "file_size": file.file_len,
        "gguf_version": file.version,
        "architecture": arch,
        "name": file.get_str("general.name")?,
        "tensor_count": file.tensors.len(),
        "tensor_bytes": file.tensor_bytes(),
        "tensor_types": types,
        "tokenizer_pre": file.get_str("tokenizer.ggml.pre")?,
        "chat_template": file.get("tokenizer.chat_template").is_some(),
    });
    let c = LlamaConfig::from_gguf(&file)?;
    let fields = json!({
        "layers": c.n_layers, "embedding_length": c.dim, "feed_forward_length": c.ffn_dim,
        "heads": c.n_heads, "kv_heads": c.n_kv_heads, "head_dim": c.head_dim,
        "context_length": c.context_length, "vocab_size": c.vocab_size, "rope_base": c.rope_base,
        "rope_dimension_count": c.rope_dim, "rms_epsilon": c.rms_eps,
        "tied_output": c.tied_output, "rope_freqs": c.has_rope_freqs,
    });
    out.as_object_mut().expect("object").extend(fields.as_object().expect("object").clone());
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn tokenize(path: &Path, text: Option<String>, input: Option<PathBuf>, bos: bool) -> Result<()> {
    let tok = Tokenizer::from_gguf(&read_header(path)?)?;
    match (text, input) {
        (Some(text), None) => println!("{}", serde_json::to_string(&tok.encode(&text, bos)?)?),
        (None, Some(input)) => {
            let raw = std::fs::read_to_string(&input).map_err(|e| format!("cannot read {}: {e}", input.display()))?;
            let strings: Vec<String> = serde_json::from_str(&raw).map_err(|e| format!("{}: expected a JSON array of strings: {e}", input.display()))?;
            let ids = strings.iter().map(|s| tok.encode(s, bos)).collect::<std::result::Result<Vec<_>, _>>()?;
            println!("{}", serde_json::to_string(&ids)?);
        }
        _ => return Err("give the text to tokenize, or --input FILE".into()),
    }
    Ok(())
}

/// The device a command runs on.
enum AnyBackend {
    Cpu(Box<CpuBackend>),
    Gpu(Box<GpuBackend>, Box<Gpu>),
}

impl Backend for AnyBackend {
    fn config(&self) -> &LlamaConfig {
        match self {
            AnyBackend::Cpu(b) => b.config(),
            AnyBackend::Gpu(b, _) => b.config(),
        }
    }
    fn context_len(&self) -> usize {
        match self {
            AnyBackend::Cpu(b) => b.context_len(),
            AnyBackend::Gpu(b, _) => b.context_len(),
        }
    }
    fn position(&self) -> usize {
        match self {
            AnyBackend::Cpu(b) => b.position(),
            AnyBackend::Gpu(b, _) => b.position(),
        }
    }
    fn rewind(&mut self, len: usize) {
        match self {
            AnyBackend::Cpu(b) => b.rewind(len),
            AnyBackend::Gpu(b, _) => b.rewind(len),
        }
    }
    async fn forward_last(&mut self, tokens: &[u32]) -> std::result::Result<Vec<f32>, EngineError> {
        match self {
            AnyBackend::Cpu(b) => b.forward_last(tokens).await,
            AnyBackend::Gpu(b, _) => b.forward_last(tokens).await,
        }
    }
    async fn next_token(&mut self, tokens: &[u32], sampler: &mut Sampler) -> std::result::Result<u32, EngineError> {
        match self {
            AnyBackend::Cpu(b) => b.next_token(tokens, sampler).await,
            AnyBackend::Gpu(b, _) => b.next_token(tokens, sampler).await,
        }
    }
}

fn open_backend(path: &Path, run: &RunArgs) -> Result<AnyBackend> {
    let header = read_header(path)?;
    let config = LlamaConfig::from_gguf(&header).map_err(|e| format!("{}: {e}", path.display()))?;
    let context = context_len(&config, run.context)?;
    match run.device {
        Device::Cpu => {
            let (model, _) = ReferenceModel::load(path).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(AnyBackend::Cpu(Box::new(CpuBackend::new(model, context))))
        }
        Device::Gpu => {
            let gpu = Gpu::new_blocking(&GpuOptions::default())?;
            let backend = GpuBackend::load_file(path, &gpu, Some(context as u64), |_, _, _| {})?;
            Ok(AnyBackend::Gpu(Box::new(backend), Box::new(gpu)))
        }
    }
}

fn context_len(config: &LlamaConfig, asked: Option<usize>) -> Result<usize> {
    let max = config.context_length;
    match asked {
        Some(0) => Err("--context must be at least 1".into()),
        Some(n) if n > max => Err(format!("--context {n} is larger than the model's context length {max}").into()),
        Some(n) => Ok(n),
        None => Ok(max.min(4096)),
    }
}

fn logits(path: &Path, tokens: &[u32], out: &Path, device: Device) -> Result<()> {
    if tokens.is_empty() {
        return Err("--tokens needs at least one id".into());
    }
    let run = RunArgs { device, context: None };
    let all = match open_backend(path, &run)? {
        AnyBackend::Cpu(mut cpu) => cpu.forward_all(tokens)?,
        // The GPU graph yields the last position's logits: run one position at a time.
        AnyBackend::Gpu(mut gpu, _) => {
            let mut all = Vec::new();
            for &t in tokens {
                all.extend(pollster::block_on(gpu.forward_last(&[t]))?);
            }
            all
        }
    };
    let vocab = all.len() / tokens.len();
    let bytes: Vec<u8> = all.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(out, bytes).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    let last = &all[all.len() - vocab..];
    let argmax = hearth::sampling::argmax(last);
    println!("{}", json!({"positions": tokens.len(), "vocab": vocab, "argmax_last": argmax}));
    Ok(())
}

/// Stream a piece of generated text to stdout as soon as it exists.
fn print_piece(piece: &str) -> bool {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(piece.as_bytes());
    let _ = out.flush();
    true
}

fn clock() -> impl Fn() -> f64 {
    let start = Instant::now();
    move || start.elapsed().as_secs_f64()
}

fn generate(args: GenerateArgs) -> Result<()> {
    let header = read_header(&args.model)?;
    let tok = Tokenizer::from_gguf(&header)?;
    let prompt: Vec<u32> = match (&args.tokens, &args.prompt) {
        (Some(ids), _) => ids.clone(),
        (None, Some(text)) if args.chat => {
            let template = ChatTemplate::from_gguf(&header, &tok)?;
            let mut messages = Vec::new();
            if let Some(system) = &args.system {
                messages.push(Message::new("system", system));
            }
            messages.push(Message::new("user", text));
            tok.encode_prompt(&template.render(&messages, true)?)?
        }
        (None, Some(text)) => tok.encode_prompt(text)?,
        (None, None) => return Err("give --prompt TEXT or --tokens IDS".into()),
    };
    if prompt.is_empty() {
        return Err("the prompt is empty".into());
    }
    let mut backend = open_backend(&args.model, &args.run)?;
    let reply = pollster::block_on(engine::generate(&mut backend, &tok, &prompt, 0, &args.sampling.params(), args.max_tokens, &clock(), &mut print_piece))?;
    println!();
    if args.json {
        println!("{}", json!({"tokens": reply.tokens, "text": reply.text}));
    }
    let s = &reply.stats;
    eprintln!(
        "[{} prompt tokens at {:.1} tok/s, {} generated at {:.1} tok/s, {}]",
        s.prompt_tokens,
        s.prefill_tok_s(),
        s.generated_tokens,
        s.decode_tok_s(),
        s.finish_reason
    );
    Ok(())
}

fn chat(path: &Path, system: Option<String>, sampling: &SamplingArgs, max_tokens: usize, run: &RunArgs) -> Result<()> {
    let header = read_header(path)?;
    let tok = Tokenizer::from_gguf(&header)?;
    let template = ChatTemplate::from_gguf(&header, &tok)?;
    let mut backend = open_backend(path, run)?;
    let mut session = engine::ChatSession::new(system);
    let params = sampling.params();
    let stdin = std::io::stdin();
    let clock = clock();
    eprintln!("hearth chat: type a message and press Enter; /reset starts over, an empty line quits.");
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 || line.trim().is_empty() {
            return Ok(());
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line == "/reset" {
            session.reset();
            continue;
        }
        let reply = pollster::block_on(session.say(&mut backend, &tok, &template, line, &params, max_tokens, &clock, &mut print_piece))?;
        println!();
        eprintln!("[{:.1} tok/s]", reply.stats.decode_tok_s());
    }
}

fn synth(out: &Path, shape: Shape, tokenizer_from: Option<&Path>, seed: u64) -> Result<()> {
    use hearth::model::synthetic::{self, SyntheticSpec};
    let tokenizer = tokenizer_from.map(read_header).transpose()?;
    if let (Some(path), Some(t)) = (tokenizer_from, &tokenizer) {
        if synthetic::tokenizer_vocab(t).is_none() {
            return Err(format!("{} has no tokenizer (tokenizer.ggml.tokens) to lend", path.display()).into());
        }
    }
    let mut spec = match shape {
        Shape::Llama3_8b => SyntheticSpec::llama3_8b(),
        Shape::Tiny => SyntheticSpec::tiny(),
    };
    spec.seed = seed;
    if let (Shape::Tiny, Some(n)) = (shape, tokenizer.as_ref().and_then(synthetic::tokenizer_vocab)) {
        spec.vocab = n;
    }
    let t0 = Instant::now();
    let file = std::fs::File::create(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut w = std::io::BufWriter::with_capacity(8 << 20, file);
    let written = synthetic::write(&spec, tokenizer.as_ref(), &mut w).and_then(|()| w.flush());
    if let Err(e) = written {
        drop(w);
        let _ = std::fs::remove_file(out);
        return Err(format!("writing {}: {e}", out.display()).into());
    }
    let bytes = std::fs::metadata(out)?.len();
    println!("{}", json!({"file": out.display().to_string(), "bytes": bytes, "seconds": t0.elapsed().as_secs_f64()}));
    Ok(())
}

fn bench(path: &Path, prompt_tokens: usize, gen_tokens: usize, json: bool, device: Device) -> Result<()> {
    if prompt_tokens == 0 || gen_tokens == 0 {
        return Err("--prompt-tokens and --gen-tokens must be at least 1".into());
    }
    let file_bytes = std::fs::metadata(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?.len();
    let header = read_header(path)?;
    let tensor_bytes = header.tensor_bytes();
    let t0 = Instant::now();
    let context = RunArgs { device, context: Some(prompt_tokens + gen_tokens) };
    let mut backend = open_backend(path, &context)?;
    let load_seconds = t0.elapsed().as_secs_f64();
    // A prompt of ordinary token ids (cycling through the low vocabulary).
    let vocab = backend.config().vocab_size as u32;
    let prompt: Vec<u32> = (0..prompt_tokens as u32).map(|i| (1000 + i * 7) % vocab).collect();
    let mut sampler = Sampler::new(hearth::sampling::SamplingParams::greedy());
    // Warm up: drivers may compile a pipeline on its first dispatch (lavapipe JIT-compiles
    // it then). Five tokens run a batched prefill graph and the decode graph once.
    let t_warm = Instant::now();
    pollster::block_on(backend.next_token(&prompt[..prompt_tokens.min(5)], &mut sampler))?;
    backend.rewind(0);
    let warmup_seconds = t_warm.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let mut next = pollster::block_on(backend.next_token(&prompt, &mut sampler))?;
    let prefill_seconds = t1.elapsed().as_secs_f64();
    let t2 = Instant::now();
    for _ in 1..gen_tokens {
        next = pollster::block_on(backend.next_token(&[next], &mut sampler))?;
    }
    let decode_seconds = t2.elapsed().as_secs_f64();
    let decode_tok_s = (gen_tokens - 1) as f64 / decode_seconds.max(1e-9);
    let prefill_tok_s = prompt_tokens as f64 / prefill_seconds.max(1e-9);
    let (adapter, dispatches, submits, readback, gpu_bytes) = match &backend {
        AnyBackend::Cpu(_) => (json!({"name": "CPU reference", "backend": "cpu"}), 0, 0, 0, 0),
        AnyBackend::Gpu(b, gpu) => {
            let r = gpu.report();
            (json!({"name": r.adapter, "backend": r.backend, "device_type": r.device_type, "driver": r.driver}),
             b.model.dispatches_per_token(), 1, 4, b.model.weights.gpu_bytes())
        }
    };
    let mut report = json!({
        "model": path.display().to_string(),
        "device": if device == Device::Gpu { "gpu" } else { "cpu" },
        "adapter": adapter,
        "load_seconds": load_seconds,
        "warmup_seconds": warmup_seconds,
        "prompt_tokens": prompt_tokens,
        "gen_tokens": gen_tokens,
        "prefill_tok_s": prefill_tok_s,
        "decode_tok_s": decode_tok_s,
        "dispatches_per_token": dispatches,
        "submits_per_token": submits,
        "readback_bytes_per_token": readback,
        "weight_gpu_bytes": gpu_bytes,
        "weight_file_bytes": tensor_bytes,
        "file_bytes": file_bytes,
    });
    if let Some(rss) = loader::peak_rss_bytes() {
        report["peak_rss_bytes"] = json!(rss);
    }
    if json {
        println!("{report}");
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}
