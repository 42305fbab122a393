//! Byte-level BPE tokenizer built from a GGUF file's `tokenizer.ggml.*` metadata.
//!
//! The pipeline follows llama.cpp (`llama-vocab.cpp`), which is what produced the fixtures and
//! what users compare against:
//!
//! 1. **Special tokens first.** Control (3), user-defined (4) and unknown (2) tokens are cut out
//!    of the raw text before any regex runs, longest token text first, exactly like llama.cpp's
//!    `tokenizer_st_partition`. Control and unknown tokens are only recognised when special
//!    parsing is on; user-defined tokens always are.
//! 2. **Pre-tokenizer** chosen by `tokenizer.ggml.pre` (see [`supported_pre_types`]): the regex split
//!    llama.cpp uses for that pre-type, then the GPT-2 byte-to-unicode mapping.
//! 3. **BPE** merges by rank, from the `tokenizers` crate. Llama 3 sets `ignore_merges`: a
//!    pre-token that is itself in the vocabulary is emitted whole.
//!
//! Decoding inverts the byte mapping. Control and unknown tokens decode to nothing (llama.cpp's
//! `token_to_piece` with `special = false`), so chat markup never leaks into the reply; use
//! [`Tokenizer::decode_with_special`] or [`Tokenizer::token_text`] to see them.
//!
//! Metadata is untrusted: every id, length and merge is checked, and a problem is a
//! [`TokenizerError`], never a panic.

use crate::gguf::{Array, GgufError, GgufFile};
use std::collections::HashSet;
use tokenizers::models::bpe::{Vocab as BpeVocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{Model, OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer, SplitDelimiterBehavior};

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("the model has no tokenizer: GGUF metadata key {0:?} is missing")]
    MissingKey(&'static str),
    #[error("tokenizer.ggml.model is {0:?}; Hearth supports only \"gpt2\" (byte-level BPE) vocabularies such as Llama 3 and SmolLM2")]
    UnsupportedModel(String),
    #[error("the GGUF file has no tokenizer.ggml.pre, so its pre-tokenizer is unknown and text would be split wrongly (llama.cpp falls back to a 'default' regex and warns that quality degrades); re-convert the model with a recent llama.cpp. Supported pre-tokenizers: {}", supported_list())]
    MissingPreType,
    #[error("unsupported pre-tokenizer tokenizer.ggml.pre = {pre:?}; supported: {}", supported_list())]
    UnsupportedPreType { pre: String },
    #[error("GGUF metadata key {key:?} should be an array of {expected}")]
    WrongArrayType { key: &'static str, expected: &'static str },
    #[error("GGUF metadata key {key:?} has {len} entries but the vocabulary has {n_tokens} tokens")]
    LengthMismatch { key: &'static str, len: usize, n_tokens: usize },
    #[error("GGUF metadata key {key:?} = {id} is not a token id (the vocabulary has {n_tokens} tokens)")]
    IdOutOfRange { key: &'static str, id: i128, n_tokens: usize },
    #[error("tokenizer.ggml.token_type[{id}] = {value} is not a known token type (0..=6)")]
    BadTokenType { id: usize, value: i64 },
    #[error("tokenizer.ggml.tokens has {0} entries; a vocabulary must have between 1 and 2^31 tokens")]
    BadVocabSize(usize),
    #[error("tokenizer.ggml.tokens has {text:?} twice (ids {first} and {second})")]
    DuplicateToken { text: String, first: u32, second: u32 },
    #[error("tokenizer.ggml.merges[{index}] = {merge:?} is malformed: {why}")]
    BadMerge { index: usize, merge: String, why: &'static str },
    #[error("cannot add BOS: the model has no tokenizer.ggml.bos_token_id")]
    NoBos,
    #[error("BPE tokenizer: {0}")]
    Bpe(String),
}

/// `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenType {
    Undefined = 0,
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}

impl TokenType {
    fn from_i64(v: i64) -> Option<Self> {
        use TokenType::*;
        Some(match v {
            0 => Undefined,
            1 => Normal,
            2 => Unknown,
            3 => Control,
            4 => UserDefined,
            5 => Unused,
            6 => Byte,
            _ => return None,
        })
    }
}

/// How a pre-type splits text before BPE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PreKind {
    /// Llama 3's regex (digits in groups of up to 3), then bytes to unicode.
    Llama3,
    /// Every digit on its own, then the GPT-2 regex and bytes to unicode.
    DigitsGpt2,
    /// The GPT-2 regex and bytes to unicode.
    Gpt2,
}

/// Supported `tokenizer.ggml.pre` values and the splitting llama.cpp applies to each. Only
/// pre-types whose llama.cpp regexes we reproduce exactly are listed; anything else is refused
/// rather than tokenized subtly wrong.
const PRE_TYPES: &[(&str, PreKind)] = &[
    ("llama-bpe", PreKind::Llama3),
    ("llama3", PreKind::Llama3),
    ("llama-v3", PreKind::Llama3),
    ("falcon3", PreKind::Llama3),
    ("smollm", PreKind::DigitsGpt2),
    ("gpt-2", PreKind::Gpt2),
];

/// The `tokenizer.ggml.pre` values Hearth can tokenize.
pub fn supported_pre_types() -> Vec<&'static str> {
    PRE_TYPES.iter().map(|&(name, _)| name).collect()
}

fn supported_list() -> String {
    supported_pre_types().iter().map(|name| format!("{name:?}")).collect::<Vec<_>>().join(", ")
}

/// Llama 3's split regex. The tokenizer.json original starts with a case-insensitive group
/// `(?i:'s|'t|...)`; llama.cpp spells the case variants out, which means the same thing.
const LLAMA3_REGEX: &str = concat!(
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])",
    r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
);

fn build_pre_tokenizer(kind: PreKind) -> Result<PreTokenizerWrapper, TokenizerError> {
    // ByteLevel with `use_regex = true` applies the GPT-2 regex (with its trailing `\s+`
    // fallback, which llama.cpp's hand-written GPT-2 splitter also has) before mapping bytes.
    let byte_level = |use_regex| PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, use_regex));
    let steps = match kind {
        PreKind::Llama3 => {
            let split = Split::new(SplitPattern::Regex(LLAMA3_REGEX.into()), SplitDelimiterBehavior::Isolated, false)
                .map_err(|e| TokenizerError::Bpe(format!("Llama 3 regex: {e}")))?;
            vec![PreTokenizerWrapper::Split(split), byte_level(false)]
        }
        // `Digits(true)` splits on `char::is_numeric`, i.e. the \p{N} categories of llama.cpp's
        // "\p{N}" pre-split.
        PreKind::DigitsGpt2 => vec![PreTokenizerWrapper::Digits(Digits::new(true)), byte_level(true)],
        PreKind::Gpt2 => vec![byte_level(true)],
    };
    Ok(PreTokenizerWrapper::Sequence(Sequence::new(steps)))
}

/// GPT-2's reversible map from bytes to printable characters: printable Latin-1 bytes map to
/// themselves, the other 68 bytes to U+0100.. in byte order. Tokens are stored in this form.
fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let c = if printable {
            b as u32
        } else {
            next += 1;
            next - 1
        };
        // All values are below 0x200, so always valid chars.
        table[b as usize] = char::from_u32(c).unwrap_or('\0');
    }
    table
}

/// A GGUF vocabulary with its BPE model, ready to encode and decode.
pub struct Tokenizer {
    /// Token text as stored in the file (byte-level form for normal tokens).
    tokens: Vec<String>,
    types: Vec<TokenType>,
    /// Decoded bytes of every token, concatenated; token `i` is `pieces[piece_ends[i-1]..piece_ends[i]]`.
    pieces: Vec<u8>,
    piece_ends: Vec<usize>,
    /// Ids cut out of raw text before BPE, longest text first (llama.cpp's order).
    specials: Vec<u32>,
    bpe: BPE,
    pre_tokenizer: PreTokenizerWrapper,
    pre: String,
    bos: Option<u32>,
    eos: Option<u32>,
    eot: Option<u32>,
    stop: Vec<u32>,
    add_bos: bool,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.tokens.len())
            .field("pre", &self.pre)
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("stop", &self.stop)
            .field("add_bos", &self.add_bos)
            .finish_non_exhaustive()
    }
}

/// Token texts that end a turn or the text, whatever the metadata says (llama.cpp finds its
/// end-of-generation tokens the same way, because converters often record only one of them).
const STOP_TEXTS: &[&str] = &["<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<|im_end|>", "<|endoftext|>"];

impl Tokenizer {
    pub fn from_gguf(file: &GgufFile) -> Result<Self, TokenizerError> {
        let model = file.get_str("tokenizer.ggml.model")?.ok_or(TokenizerError::MissingKey("tokenizer.ggml.model"))?;
        if model != "gpt2" {
            return Err(TokenizerError::UnsupportedModel(model.to_owned()));
        }
        let pre = file.get_str("tokenizer.ggml.pre")?.ok_or(TokenizerError::MissingPreType)?;
        let kind = match PRE_TYPES.iter().find(|&&(name, _)| name == pre) {
            Some(&(_, kind)) => kind,
            None => return Err(TokenizerError::UnsupportedPreType { pre: pre.to_owned() }),
        };

        let tokens = match file.get_array("tokenizer.ggml.tokens")? {
            Some(Array::String(v)) => v.clone(),
            Some(_) => return Err(TokenizerError::WrongArrayType { key: "tokenizer.ggml.tokens", expected: "strings" }),
            None => return Err(TokenizerError::MissingKey("tokenizer.ggml.tokens")),
        };
        let n = tokens.len();
        if n == 0 || n > i32::MAX as usize {
            return Err(TokenizerError::BadVocabSize(n));
        }

        // No token types means every token is normal (llama.cpp does the same).
        let types = match file.get_array("tokenizer.ggml.token_type")? {
            None => vec![TokenType::Normal; n],
            Some(a) => {
                let key = "tokenizer.ggml.token_type";
                let raw = a.to_i64_vec().ok_or(TokenizerError::WrongArrayType { key, expected: "integers" })?;
                if raw.len() != n {
                    return Err(TokenizerError::LengthMismatch { key, len: raw.len(), n_tokens: n });
                }
                raw.iter()
                    .enumerate()
                    .map(|(id, &value)| TokenType::from_i64(value).ok_or(TokenizerError::BadTokenType { id, value }))
                    .collect::<Result<Vec<_>, _>>()?
            }
        };

        let id_key = |key: &'static str| -> Result<Option<u32>, TokenizerError> {
            match file.get_int(key)? {
                None => Ok(None),
                Some(id) if id >= 0 && (id as u128) < n as u128 => Ok(Some(id as u32)),
                Some(id) => Err(TokenizerError::IdOutOfRange { key, id, n_tokens: n }),
            }
        };
        let bos = id_key("tokenizer.ggml.bos_token_id")?;
        let eos = id_key("tokenizer.ggml.eos_token_id")?;
        let eot = id_key("tokenizer.ggml.eot_token_id")?;
        let eom = id_key("tokenizer.ggml.eom_token_id")?;
        // llama.cpp: BPE vocabularies default to no BOS, except the Llama 3 pre-types which
        // default to adding it; the key, when present, overrides both.
        let add_bos = file.get_bool("tokenizer.ggml.add_bos_token")?.unwrap_or(kind == PreKind::Llama3);

        let merges = match file.get_array("tokenizer.ggml.merges")? {
            Some(Array::String(v)) => v,
            Some(_) => return Err(TokenizerError::WrongArrayType { key: "tokenizer.ggml.merges", expected: "strings" }),
            None => return Err(TokenizerError::MissingKey("tokenizer.ggml.merges")),
        };
        let bpe = build_bpe(&tokens, merges, kind == PreKind::Llama3)?;
        // Like llama.cpp, find the end-of-turn token by its text when the file does not name it.
        let eot = eot.or_else(|| ["<|eot_id|>", "<|im_end|>", "<|endoftext|>"].iter().find_map(|t| bpe.token_to_id(t)));
        let pre_tokenizer = build_pre_tokenizer(kind)?;

        let (pieces, piece_ends) = decode_pieces(&tokens, &types);

        let mut specials: Vec<u32> = (0..n as u32)
            .filter(|&i| {
                let t = types[i as usize];
                matches!(t, TokenType::Control | TokenType::UserDefined | TokenType::Unknown) && !tokens[i as usize].is_empty()
            })
            .collect();
        // Stable sort: among equal lengths the lower id wins, which keeps results deterministic.
        specials.sort_by_key(|&i| std::cmp::Reverse(tokens[i as usize].len()));

        let mut stop: Vec<u32> = [eos, eot, eom].into_iter().flatten().collect();
        for (i, t) in tokens.iter().enumerate() {
            if STOP_TEXTS.contains(&t.as_str()) {
                stop.push(i as u32);
            }
        }
        stop.sort_unstable();
        stop.dedup();

        Ok(Tokenizer {
            tokens,
            types,
            pieces,
            piece_ends,
            specials,
            bpe,
            pre_tokenizer,
            pre: pre.to_owned(),
            bos,
            eos,
            eot,
            stop,
            add_bos,
        })
    }

    /// Tokenize `text`, recognising special-token text (`<|eot_id|>`, `<|im_start|>`, ...) as
    /// those tokens, like llama.cpp with `parse_special = true`. A BOS id is prepended only if
    /// `add_bos` is set.
    pub fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>, TokenizerError> {
        self.encode_with(text, add_bos, true)
    }

    /// [`Tokenizer::encode`] with control-token parsing optional: with `parse_special = false`,
    /// text such as `<|eot_id|>` is tokenized as plain characters (user-defined tokens are still
    /// recognised, as in llama.cpp and Hugging Face).
    pub fn encode_with(&self, text: &str, add_bos: bool, parse_special: bool) -> Result<Vec<u32>, TokenizerError> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_bos {
            out.push(self.bos.ok_or(TokenizerError::NoBos)?);
        }
        for frag in self.partition(text, parse_special) {
            match frag {
                Fragment::Text(start, end) => self.encode_plain(&text[start..end], &mut out)?,
                Fragment::Token(id) => out.push(id),
            }
        }
        Ok(out)
    }

    /// Tokenize a rendered chat prompt: special tokens parsed, and BOS added when the model asks
    /// for it ([`Tokenizer::add_bos_default`]) unless the template already wrote the BOS text,
    /// so the prompt never starts with two BOS tokens.
    pub fn encode_prompt(&self, prompt: &str) -> Result<Vec<u32>, TokenizerError> {
        let mut ids = self.encode(prompt, false)?;
        if let (true, Some(bos)) = (self.add_bos, self.bos) {
            if ids.first() != Some(&bos) {
                ids.insert(0, bos);
            }
        }
        Ok(ids)
    }

    /// Split `text` into raw-text ranges and special tokens. Like llama.cpp, each special token
    /// in turn (longest first) is cut out of every remaining raw range, left to right.
    fn partition(&self, text: &str, parse_special: bool) -> Vec<Fragment> {
        if text.is_empty() {
            return Vec::new();
        }
        let mut frags = vec![Fragment::Text(0, text.len())];
        // Cheap filter: most special tokens start with a byte the text does not contain.
        let mut present = [false; 256];
        for &b in text.as_bytes() {
            present[b as usize] = true;
        }
        for &id in &self.specials {
            if !parse_special && self.types[id as usize] != TokenType::UserDefined {
                continue;
            }
            let needle = self.tokens[id as usize].as_str();
            if !present[needle.as_bytes()[0] as usize] || !text.contains(needle) {
                continue;
            }
            let mut next = Vec::with_capacity(frags.len() + 2);
            for frag in frags {
                let Fragment::Text(start, end) = frag else {
                    next.push(frag);
                    continue;
                };
                let mut pos = start;
                for (at, _) in text[start..end].match_indices(needle) {
                    let at = start + at;
                    if at > pos {
                        next.push(Fragment::Text(pos, at));
                    }
                    next.push(Fragment::Token(id));
                    pos = at + needle.len();
                }
                if pos < end {
                    next.push(Fragment::Text(pos, end));
                }
            }
            frags = next;
        }
        frags
    }

    /// Pre-tokenize and BPE-encode text that contains no special tokens.
    fn encode_plain(&self, text: &str, out: &mut Vec<u32>) -> Result<(), TokenizerError> {
        let mut pre = PreTokenizedString::from(text);
        self.pre_tokenizer.pre_tokenize(&mut pre).map_err(|e| TokenizerError::Bpe(e.to_string()))?;
        for (word, _, _) in pre.get_splits(OffsetReferential::Original, OffsetType::None) {
            let toks = self.bpe.tokenize(word).map_err(|e| TokenizerError::Bpe(e.to_string()))?;
            out.extend(toks.iter().map(|t| t.id));
        }
        Ok(())
    }

    /// The bytes a token contributes to the output text: normal tokens byte-decoded,
    /// user-defined tokens as written, control/unknown/unused/byte tokens and out-of-range ids
    /// as nothing (llama.cpp's `token_to_piece` without `special`).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        let i = id as usize;
        if i >= self.piece_ends.len() {
            return &[];
        }
        let start = if i == 0 { 0 } else { self.piece_ends[i - 1] };
        &self.pieces[start..self.piece_ends[i]]
    }

    /// Decode ids to text; invalid UTF-8 (a character cut by the end of `ids`) becomes U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids.iter().flat_map(|&id| self.token_bytes(id).iter().copied()).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Like [`Tokenizer::decode`], but control and unknown tokens appear as their text
    /// (`<|eot_id|>`), for showing prompts.
    pub fn decode_with_special(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            match self.token_type(id) {
                Some(TokenType::Control | TokenType::Unknown) => bytes.extend_from_slice(self.tokens[id as usize].as_bytes()),
                _ => bytes.extend_from_slice(self.token_bytes(id)),
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// True for tokens that end generation: EOS, EOT/EOM, and the end-of-turn texts of the
    /// common chat formats (`<|eot_id|>`, `<|eom_id|>`, `<|end_of_text|>`, `<|im_end|>`,
    /// `<|endoftext|>`).
    pub fn is_stop(&self, id: u32) -> bool {
        self.stop.binary_search(&id).is_ok()
    }

    /// All stop ids, sorted (for GPU-side stop checks).
    pub fn stop_ids(&self) -> &[u32] {
        &self.stop
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    /// The end-of-turn token: `tokenizer.ggml.eot_token_id`, or else the first of
    /// `<|eot_id|>`, `<|im_end|>`, `<|endoftext|>` in the vocabulary (llama.cpp's fallback).
    pub fn eot_id(&self) -> Option<u32> {
        self.eot
    }

    /// Whether prompts should start with BOS: `tokenizer.ggml.add_bos_token`, or when absent
    /// llama.cpp's default (true for the Llama 3 pre-types, false for other BPE vocabularies).
    pub fn add_bos_default(&self) -> bool {
        self.add_bos
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The token's text as stored in the file (byte-level form, e.g. `Ġhello`).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.types.get(id as usize).copied()
    }

    /// Id of the token whose stored text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.bpe.token_to_id(text)
    }

    /// The `tokenizer.ggml.pre` value in use.
    pub fn pre_type(&self) -> &str {
        &self.pre
    }
}

enum Fragment {
    Text(usize, usize),
    Token(u32),
}

/// Build the BPE model after checking every merge: the `tokenizers` builder indexes a buffer
/// by token lengths and would panic on a merge whose parts or result are not in the
/// vocabulary, so hostile merges must be refused here.
fn build_bpe(tokens: &[String], merges: &[String], ignore_merges: bool) -> Result<BPE, TokenizerError> {
    let mut vocab = BpeVocab::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        // Empty tokens can never match text; llama.cpp renames them, we just leave them out.
        if t.is_empty() {
            continue;
        }
        if let Some(first) = vocab.insert(t.clone(), i as u32) {
            return Err(TokenizerError::DuplicateToken { text: t.clone(), first, second: i as u32 });
        }
    }

    let mut pairs = Vec::with_capacity(merges.len());
    let mut joined = String::new();
    let mut seen = HashSet::with_capacity(merges.len());
    for (index, merge) in merges.iter().enumerate() {
        let bad = |why| TokenizerError::BadMerge { index, merge: merge.clone(), why };
        // llama.cpp splits at the first space after the first byte, so "  x" style merges of
        // a literal space (vocabularies without the byte mapping) still work.
        let pos = merge.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1).ok_or_else(|| bad("no space between the two parts"))?;
        let (left, right) = (&merge[..pos], &merge[pos + 1..]);
        if right.is_empty() {
            return Err(bad("the second part is empty"));
        }
        let (Some(&l), Some(&r)) = (vocab.get(left), vocab.get(right)) else {
            return Err(bad("a part is not in the vocabulary"));
        };
        joined.clear();
        joined.push_str(left);
        joined.push_str(right);
        if !vocab.contains_key(joined.as_str()) {
            return Err(bad("the merged token is not in the vocabulary"));
        }
        // A repeated pair keeps its first (best) rank, as in llama.cpp; the builder would
        // otherwise keep the last.
        if seen.insert((l as u64) << 32 | r as u64) {
            pairs.push((left.to_owned(), right.to_owned()));
        }
    }

    BPE::builder()
        .vocab_and_merges(vocab, pairs)
        .ignore_merges(ignore_merges)
        .build()
        .map_err(|e| TokenizerError::Bpe(e.to_string()))
}

/// Decoded bytes for every token (see [`Tokenizer::token_bytes`]), in one buffer.
fn decode_pieces(tokens: &[String], types: &[TokenType]) -> (Vec<u8>, Vec<usize>) {
    let byte_to_char = byte_to_char_table();
    let mut char_to_byte = [None; 512];
    for (b, &c) in byte_to_char.iter().enumerate() {
        char_to_byte[c as usize] = Some(b as u8);
    }
    let mut pieces = Vec::with_capacity(tokens.iter().map(String::len).sum());
    let mut ends = Vec::with_capacity(tokens.len());
    for (text, &ty) in tokens.iter().zip(types) {
        match ty {
            TokenType::Normal => {
                for c in text.chars() {
                    match char_to_byte.get(c as usize).copied().flatten() {
                        Some(b) => pieces.push(b),
                        // Not produced by the byte mapping: keep the character itself rather
                        // than dropping it (llama.cpp prints an [UNK_BYTE] marker).
                        None => pieces.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                    }
                }
            }
            TokenType::UserDefined => pieces.extend_from_slice(text.as_bytes()),
            _ => {}
        }
        ends.push(pieces.len());
    }
    (pieces, ends)
}

/// Turns a stream of token ids into text, never emitting half a UTF-8 character: bytes of an
/// incomplete character wait for the next token. Invalid bytes become U+FFFD as soon as they
/// are known to be invalid, so the concatenated output equals [`Tokenizer::decode`] of all ids.
#[derive(Clone, Debug)]
pub struct Detokenizer<'a> {
    tokenizer: &'a Tokenizer,
    pending: Vec<u8>,
}

impl<'a> Detokenizer<'a> {
    pub fn new(tokenizer: &'a Tokenizer) -> Self {
        Detokenizer { tokenizer, pending: Vec::new() }
    }

    /// Add one token; returns the text that became complete (often empty mid-character).
    pub fn push(&mut self, id: u32) -> String {
        self.pending.extend_from_slice(self.tokenizer.token_bytes(id));
        let mut out = String::new();
        let mut start = 0;
        while start < self.pending.len() {
            match std::str::from_utf8(&self.pending[start..]) {
                Ok(s) => {
                    out.push_str(s);
                    start = self.pending.len();
                }
                Err(e) => {
                    let valid_end = start + e.valid_up_to();
                    out.push_str(&String::from_utf8_lossy(&self.pending[start..valid_end]));
                    match e.error_len() {
                        // Invalid sequence: one replacement character, as from_utf8_lossy does.
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            start = valid_end + n;
                        }
                        // A character cut short at the end: keep it for the next token.
                        None => {
                            start = valid_end;
                            break;
                        }
                    }
                }
            }
        }
        self.pending.drain(..start);
        out
    }

    /// End of stream: whatever is still pending, with an unfinished character as U+FFFD.
    pub fn flush(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }

    /// True while bytes of an unfinished character are held back.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}
