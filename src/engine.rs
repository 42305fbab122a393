//! Generation over any backend: the CPU reference or the GPU engine.
//!
//! A [`Backend`] runs tokens through the model and keeps its own KV cache; [`generate`] drives
//! one reply: prefill the prompt, then pick a token, feed it back, and stream text until an
//! end-of-turn token or the token limit.

use crate::model::config::{LlamaConfig, ModelError};
use crate::model::reference::{KvCache, ReferenceModel};
use crate::sampling::{Sampler, SamplingParams};
use crate::chat::{ChatTemplate, Message};
use crate::tokenizer::{Detokenizer, Tokenizer};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("the context is full: {needed} tokens needed, the context holds {context} (start a new chat or raise the context length)")]
    ContextFull { needed: usize, context: usize },
    #[error("token id {id} is outside the vocabulary of {vocab} tokens")]
    BadToken { id: u32, vocab: usize },
    #[error("{0}")]
    Backend(String),
}

/// A model that can run tokens. Implementations keep the KV cache of the current sequence.
/// Running is `async` because the GPU backend awaits WebGPU in the browser; natively the
/// futures are driven by `pollster`, and the CPU backend's are ready at once.
#[allow(async_fn_in_trait)]
pub trait Backend {
    fn config(&self) -> &LlamaConfig;

    /// Tokens the cache can hold.
    fn context_len(&self) -> usize;

    /// Tokens already in the cache.
    fn position(&self) -> usize;

    /// Keep only the first `len` positions of the cache (a new chat is `rewind(0)`), so a
    /// conversation that shares a prefix with the cache reuses it.
    fn rewind(&mut self, len: usize);

    /// Run `tokens` at the next positions and return the logits of the last one (vocab floats).
    async fn forward_last(&mut self, tokens: &[u32]) -> Result<Vec<f32>, EngineError>;

    /// Run `tokens` and choose the next token. Backends that sample on their own device
    /// override this so that logits never leave it.
    async fn next_token(&mut self, tokens: &[u32], sampler: &mut Sampler) -> Result<u32, EngineError> {
        let mut logits = self.forward_last(tokens).await?;
        Ok(sampler.sample(&mut logits))
    }

    /// Check that `tokens` fit after the current position and are valid ids.
    fn check_input(&self, tokens: &[u32]) -> Result<(), EngineError> {
        let vocab = self.config().vocab_size;
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(EngineError::BadToken { id, vocab });
        }
        let needed = self.position() + tokens.len();
        if needed > self.context_len() {
            return Err(EngineError::ContextFull { needed, context: self.context_len() });
        }
        Ok(())
    }
}

/// The CPU reference as a backend (`--device cpu`).
pub struct CpuBackend {
    pub model: ReferenceModel,
    cache: KvCache,
    context: usize,
}

impl CpuBackend {
    pub fn new(model: ReferenceModel, context: usize) -> Self {
        let cache = KvCache::new(&model.config);
        Self { model, cache, context }
    }

    /// Logits of every position of `tokens` (tokens.len() x vocab), continuing the sequence.
    pub fn forward_all(&mut self, tokens: &[u32]) -> Result<Vec<f32>, EngineError> {
        self.check_input(tokens)?;
        Ok(self.model.forward(tokens, &mut self.cache))
    }
}

impl Backend for CpuBackend {
    fn config(&self) -> &LlamaConfig {
        &self.model.config
    }
    fn context_len(&self) -> usize {
        self.context
    }
    fn position(&self) -> usize {
        self.cache.len
    }
    fn rewind(&mut self, len: usize) {
        let kv_dim = self.model.config.kv_dim();
        let len = len.min(self.cache.len);
        for layer in self.cache.k.iter_mut().chain(self.cache.v.iter_mut()) {
            layer.truncate(len * kv_dim);
        }
        self.cache.len = len;
    }
    async fn forward_last(&mut self, tokens: &[u32]) -> Result<Vec<f32>, EngineError> {
        let vocab = self.model.config.vocab_size;
        let all = self.forward_all(tokens)?;
        Ok(all[all.len() - vocab..].to_vec())
    }
}

/// What one reply took.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub prefill_seconds: f64,
    pub decode_seconds: f64,
    /// Why generation ended: "stop" (end-of-turn token), "length" or "aborted".
    pub finish_reason: &'static str,
}

impl GenerationStats {
    pub fn prefill_tok_s(&self) -> f64 {
        self.prompt_tokens as f64 / self.prefill_seconds.max(1e-9)
    }
    /// Decode speed over the tokens after the first (the first comes out of the prefill).
    pub fn decode_tok_s(&self) -> f64 {
        self.generated_tokens.saturating_sub(1) as f64 / self.decode_seconds.max(1e-9)
    }
}

pub struct Reply {
    /// Generated tokens, the stop token included if one ended the reply.
    pub tokens: Vec<u32>,
    /// The text of the generated tokens, end-of-turn tokens excluded.
    pub text: String,
    pub stats: GenerationStats,
}

/// Generate a continuation of `prompt`, the whole token sequence the model should see, of which
/// the first `reuse` tokens are already in the backend's cache (0 for a fresh start). `on_text`
/// gets each complete piece of text as it is produced and returns false to stop early.
#[allow(clippy::too_many_arguments)]
pub async fn generate<B: Backend>(
    backend: &mut B,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    reuse: usize,
    params: &SamplingParams,
    max_tokens: usize,
    clock: &dyn Fn() -> f64,
    on_text: &mut dyn FnMut(&str) -> bool,
) -> Result<Reply, EngineError> {
    let mut sampler = Sampler::new(params.clone());
    for &t in prompt {
        sampler.accept(t);
    }
    let mut stats = GenerationStats { prompt_tokens: prompt.len(), finish_reason: "length", ..Default::default() };
    let mut detok = Detokenizer::new(tokenizer);
    let mut tokens = Vec::new();
    let mut text = String::new();
    let t0 = clock();
    // Feed at least one token: its logits pick the first reply token.
    let reuse = reuse.min(prompt.len().saturating_sub(1)).min(backend.position());
    backend.rewind(reuse);
    let mut input: Vec<u32> = prompt[reuse..].to_vec();
    stats.prompt_tokens = input.len();
    let mut t_first = t0;
    while tokens.len() < max_tokens {
        // Leave room for the token we are about to feed back.
        if backend.position() + input.len() > backend.context_len() {
            break;
        }
        let next = backend.next_token(&input, &mut sampler).await?;
        if tokens.is_empty() {
            t_first = clock();
            stats.prefill_seconds = t_first - t0;
        }
        sampler.accept(next);
        tokens.push(next);
        if tokenizer.is_stop(next) {
            stats.finish_reason = "stop";
            break;
        }
        let piece = detok.push(next);
        text.push_str(&piece);
        if !piece.is_empty() && !on_text(&piece) {
            stats.finish_reason = "aborted";
            break;
        }
        input = vec![next];
    }
    let rest = detok.flush();
    if !rest.is_empty() {
        text.push_str(&rest);
        on_text(&rest);
    }
    stats.generated_tokens = tokens.len();
    stats.decode_seconds = clock() - t_first;
    Ok(Reply { tokens, text, stats })
}

/// A multi-turn conversation over one backend: each turn renders the whole conversation through
/// the chat template and reuses the cached prefix it shares with the previous turn.
pub struct ChatSession {
    pub messages: Vec<Message>,
    system: Option<String>,
    /// The tokens in the backend's cache, in order.
    cached: Vec<u32>,
}

impl ChatSession {
    pub fn new(system: Option<String>) -> Self {
        let mut s = Self { messages: Vec::new(), system, cached: Vec::new() };
        s.reset();
        s
    }

    pub fn reset(&mut self) {
        self.messages.clear();
        self.cached.clear();
        if let Some(system) = &self.system {
            self.messages.push(Message::new("system", system));
        }
    }

    /// Add a user message and generate the assistant's reply.
    #[allow(clippy::too_many_arguments)]
    pub async fn say<B: Backend>(
        &mut self,
        backend: &mut B,
        tokenizer: &Tokenizer,
        template: &ChatTemplate,
        user: &str,
        params: &SamplingParams,
        max_tokens: usize,
        clock: &dyn Fn() -> f64,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Reply, EngineError> {
        let mut messages = self.messages.clone();
        messages.push(Message::new("user", user));
        let reply = self.respond(backend, tokenizer, template, &messages, params, max_tokens, clock, on_text).await?;
        self.messages = messages;
        self.messages.push(Message::new("assistant", &reply.text));
        Ok(reply)
    }

    /// Generate the assistant's next message after `messages` (the whole conversation, as a
    /// page keeps it), reusing whatever prefix of it the backend's cache already holds.
    #[allow(clippy::too_many_arguments)]
    pub async fn respond<B: Backend>(
        &mut self,
        backend: &mut B,
        tokenizer: &Tokenizer,
        template: &ChatTemplate,
        messages: &[Message],
        params: &SamplingParams,
        max_tokens: usize,
        clock: &dyn Fn() -> f64,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Reply, EngineError> {
        let text = template.render(messages, true).map_err(|e| EngineError::Backend(e.to_string()))?;
        let prompt = tokenizer.encode_prompt(&text).map_err(|e| EngineError::Backend(e.to_string()))?;
        // A cache that no longer matches (another backend user) is not reused.
        let cached = if backend.position() == self.cached.len() { self.cached.as_slice() } else { &[] };
        let reuse = cached.iter().zip(&prompt).take_while(|(a, b)| a == b).count();
        self.cached.clear();
        let reply = generate(backend, tokenizer, &prompt, reuse, params, max_tokens, clock, on_text).await?;
        // Every generated token but the last was fed back into the cache.
        self.cached = prompt;
        self.cached.extend_from_slice(&reply.tokens[..reply.tokens.len().saturating_sub(1)]);
        Ok(reply)
    }

    /// Tokens in the backend's cache for this conversation.
    pub fn cached_tokens(&self) -> usize {
        self.cached.len()
    }
}
