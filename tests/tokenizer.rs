//! Tokenizer and chat-template tests against llama.cpp's output on the fixture vocabularies.
#![cfg(not(target_arch = "wasm32"))]

use hearth::chat::{ChatError, ChatTemplate, Message, TemplateSource};
use hearth::gguf::{self, Array, GgufFile, GgufWriter, Value};
use hearth::tokenizer::{Detokenizer, TokenType, Tokenizer, TokenizerError};
use serde_json::Value as Json;
use std::path::PathBuf;
use std::sync::OnceLock;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load_gguf(path: PathBuf) -> GgufFile {
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!("cannot read {}: {e} (models/ files are fetched by scripts/fetch-model.sh; run it first)", path.display())
    });
    gguf::parse_complete(&bytes).expect("fixture GGUF parses")
}

fn llama3() -> &'static (GgufFile, Tokenizer) {
    static CELL: OnceLock<(GgufFile, Tokenizer)> = OnceLock::new();
    CELL.get_or_init(|| {
        let file = load_gguf(root().join("tests/fixtures/tiny-llama3-q4km.gguf"));
        let tok = Tokenizer::from_gguf(&file).expect("Llama 3 tokenizer builds");
        (file, tok)
    })
}

fn smollm2() -> &'static (GgufFile, Tokenizer) {
    static CELL: OnceLock<(GgufFile, Tokenizer)> = OnceLock::new();
    CELL.get_or_init(|| {
        let file = load_gguf(root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf"));
        let tok = Tokenizer::from_gguf(&file).expect("SmolLM2 tokenizer builds");
        (file, tok)
    })
}

fn json(name: &str) -> Json {
    let text = std::fs::read_to_string(root().join("tests/fixtures").join(name)).expect("fixture exists");
    serde_json::from_str(&text).expect("fixture is JSON")
}

fn ids(v: &Json) -> Vec<u32> {
    v.as_array().expect("id list").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

/// (text, ids) of a *-tokenizer-cases.json file.
fn cases(name: &str) -> Vec<(String, Vec<u32>)> {
    json(name)["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| (c["text"].as_str().expect("text").to_owned(), ids(&c["ids"])))
        .collect()
}

fn check_cases(tok: &Tokenizer, name: &str) {
    let cases = cases(name);
    assert_eq!(cases.len(), 137, "{name} should have 137 cases");
    let mut failures = Vec::new();
    for (text, want) in &cases {
        let got = tok.encode(text, false).expect("encodes");
        if &got != want {
            failures.push(format!("{text:?}\n   want {want:?}\n    got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ from llama.cpp:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn llama3_matches_llama_cpp_on_all_cases() {
    check_cases(&llama3().1, "llama3-tokenizer-cases.json");
}

#[test]
fn smollm2_matches_llama_cpp_on_all_cases() {
    check_cases(&smollm2().1, "smollm2-tokenizer-cases.json");
}

fn check_ref_prompts(tok: &Tokenizer, name: &str) {
    for case in json(name)["cases"].as_array().expect("cases") {
        let prompt = case["prompt"].as_str().expect("prompt");
        let add_bos = case["add_bos"].as_bool().expect("add_bos");
        let special = case["special"].as_bool().expect("special");
        let got = tok.encode_with(prompt, add_bos, special).expect("encodes");
        assert_eq!(got, ids(&case["tokens"]), "{name}: {prompt:?}");
    }
}

#[test]
fn reference_prompts_tokenize_like_the_fixtures() {
    check_ref_prompts(&llama3().1, "tiny-llama3-q4km.ref.json");
    check_ref_prompts(&smollm2().1, "smollm2-135m-instruct-q4_1.ref.json");
}

#[test]
fn special_tokens_are_plain_text_without_special_parsing() {
    let tok = &llama3().1;
    let plain = tok.encode_with("<|eot_id|>", false, false).unwrap();
    assert!(plain.len() > 1 && !plain.contains(&128009), "{plain:?}");
    assert_eq!(tok.decode(&plain), "<|eot_id|>");
    assert_eq!(tok.encode("<|eot_id|>", false).unwrap(), [128009]);
}

/// decode(encode(s)) == s, and the streaming detokenizer agrees with decode token by token.
fn check_round_trip(tok: &Tokenizer, name: &str) {
    for (text, _) in cases(name) {
        let ids = tok.encode(&text, false).unwrap();
        // Control tokens decode to nothing, so compare against the text without them.
        assert_eq!(tok.decode_with_special(&ids), text, "{name}: special-aware round trip");
        let has_control = ids.iter().any(|&id| tok.token_type(id) == Some(TokenType::Control));
        let decoded = tok.decode(&ids);
        if !has_control {
            assert_eq!(decoded, text, "{name}: round trip");
        }
        let mut detok = Detokenizer::new(tok);
        let mut streamed = String::new();
        for &id in &ids {
            streamed.push_str(&detok.push(id));
        }
        assert!(!detok.has_pending(), "{text:?}: complete text leaves nothing pending");
        streamed.push_str(&detok.flush());
        assert_eq!(streamed, decoded, "{name}: streamed {text:?}");
    }
}

#[test]
fn round_trip_llama3() {
    check_round_trip(&llama3().1, "llama3-tokenizer-cases.json");
}

#[test]
fn round_trip_smollm2() {
    check_round_trip(&smollm2().1, "smollm2-tokenizer-cases.json");
}

#[test]
fn detokenizer_holds_back_a_split_emoji() {
    let tok = &llama3().1;
    let ids = tok.encode("a🦙b", false).unwrap();
    // The llama is 4 UTF-8 bytes spread over several byte-level tokens.
    assert!(ids.len() >= 4, "{ids:?}");
    let mut detok = Detokenizer::new(tok);
    let pieces: Vec<String> = ids.iter().map(|&id| detok.push(id)).collect();
    assert_eq!(pieces.concat(), "a🦙b");
    assert!(pieces.iter().all(|p| p.chars().all(|c| c != char::REPLACEMENT_CHARACTER)), "{pieces:?}");
    // Some pieces are empty while the character is incomplete; none holds half a character
    // (impossible for a String anyway), and the emoji arrives whole in one piece.
    assert!(pieces.iter().any(|p| p.is_empty()), "{pieces:?}");
    assert!(pieces.iter().any(|p| p.contains('🦙')), "{pieces:?}");

    // A stream that stops mid-character flushes a replacement character, like decode.
    let cut = &ids[..2];
    let mut detok = Detokenizer::new(tok);
    let mut out: String = cut.iter().map(|&id| detok.push(id)).collect();
    assert!(detok.has_pending());
    out.push_str(&detok.flush());
    assert_eq!(out, tok.decode(cut));
    assert!(out.ends_with(char::REPLACEMENT_CHARACTER));
}

#[test]
fn special_ids_stop_tokens_and_bos_policy() {
    let l3 = &llama3().1;
    assert_eq!(l3.vocab_size(), 128256);
    assert_eq!(l3.bos_id(), Some(128000));
    assert_eq!(l3.eos_id(), Some(128009));
    assert_eq!(l3.eot_id(), Some(128009), "found by text: the file has no eot_token_id");
    assert!(l3.add_bos_default());
    assert_eq!(l3.pre_type(), "llama-bpe");
    assert!(l3.is_stop(128009) && l3.is_stop(128001), "<|eot_id|> and <|end_of_text|> stop");
    assert_eq!(l3.stop_ids(), [128001, 128009]);
    assert!(!l3.is_stop(128000) && !l3.is_stop(128006) && !l3.is_stop(9906));
    assert_eq!(l3.token_text(128000), Some("<|begin_of_text|>"));
    assert_eq!(l3.token_type(128000), Some(TokenType::Control));
    assert_eq!(l3.token_bytes(128000), b"", "control tokens render as nothing");
    assert_eq!(l3.token_bytes(22691), b" Hello");
    assert_eq!(l3.token_bytes(u32::MAX), b"");
    assert_eq!(l3.encode("Hi", true).unwrap()[0], 128000);

    let sm = &smollm2().1;
    assert_eq!(sm.vocab_size(), 49152);
    assert!(!sm.add_bos_default(), "SmolLM2 sets tokenizer.ggml.add_bos_token = false");
    assert!(sm.is_stop(2) && sm.is_stop(0), "<|im_end|> and <|endoftext|> stop");
    assert!(!sm.is_stop(1));
    assert_eq!(sm.eot_id(), Some(2));
}

#[test]
fn encode_prompt_adds_bos_once() {
    let tok = &llama3().1;
    let with = tok.encode_prompt("<|begin_of_text|>Hi").unwrap();
    let without = tok.encode_prompt("Hi").unwrap();
    assert_eq!(with, without);
    assert_eq!(with[0], 128000);
    assert_eq!(with.iter().filter(|&&id| id == 128000).count(), 1);
    let sm = &smollm2().1;
    assert_eq!(sm.encode_prompt("Hi").unwrap(), sm.encode("Hi", false).unwrap());
}

// ---- chat templates ----

#[test]
fn smollm2_template_renders_the_reference_prompt() {
    let (file, tok) = smollm2();
    let chat = ChatTemplate::from_gguf(file, tok).unwrap();
    assert_eq!(chat.source(), TemplateSource::Gguf);
    let messages = [
        Message::new("system", "You are a helpful AI assistant named SmolLM, trained by Hugging Face"),
        Message::new("user", "What is the capital of France?"),
    ];
    let prompt = chat.render(&messages, true).unwrap();
    let reference = &json("smollm2-135m-instruct-q4_1.ref.json")["cases"][1];
    assert_eq!(prompt, reference["prompt"].as_str().unwrap());
    assert_eq!(tok.encode_prompt(&prompt).unwrap(), ids(&reference["tokens"]));
    // Without the flag the assistant header is left out.
    assert!(!chat.render(&messages, false).unwrap().ends_with("assistant\n"));
}

#[test]
fn llama3_template_renders_the_reference_prompt() {
    let (file, tok) = llama3();
    let chat = ChatTemplate::from_gguf(file, tok).unwrap();
    assert_eq!(chat.bos_token(), "<|begin_of_text|>");
    let prompt = chat.render(&[Message::new("user", "Hi there! How are you?")], true).unwrap();
    let reference = &json("tiny-llama3-q4km.ref.json")["cases"][1];
    // The template writes the BOS text itself, so the prompt already starts with it.
    assert_eq!(prompt, reference["prompt"].as_str().unwrap());
    assert_eq!(tok.encode_prompt(&prompt).unwrap(), ids(&reference["tokens"]));
}

#[test]
fn multi_turn_conversations_render_every_turn() {
    let (file, tok) = smollm2();
    let chat = ChatTemplate::from_gguf(file, tok).unwrap();
    let messages = [
        Message::new("user", "Hi"),
        Message::new("assistant", "Hello! How can I help?"),
        Message::new("user", "Tell me a joke."),
    ];
    let prompt = chat.render(&messages, true).unwrap();
    assert_eq!(
        prompt,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello! How can I help?<|im_end|>\n\
         <|im_start|>user\nTell me a joke.<|im_end|>\n<|im_start|>assistant\n"
    );

    let (file, tok) = llama3();
    let chat = ChatTemplate::from_gguf(file, tok).unwrap();
    let prompt = chat.render(&messages, true).unwrap();
    assert_eq!(
        prompt,
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\nHello! How can I help?<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\nTell me a joke.<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\n"
    );
}

#[test]
fn template_errors_carry_the_templates_message() {
    let t = ChatTemplate::from_template(
        "{% if messages[0].role != 'user' %}{{ raise_exception('Conversations must start with the user') }}{% endif %}ok",
        "",
        "",
    )
    .unwrap();
    assert_eq!(t.render(&[Message::new("user", "x")], true).unwrap(), "ok");
    match t.render(&[Message::new("assistant", "x")], true) {
        Err(ChatError::Render(msg)) => assert_eq!(msg, "Conversations must start with the user"),
        other => panic!("expected a render error, got {other:?}"),
    }
    assert!(matches!(ChatTemplate::from_template("{% for %}", "", ""), Err(ChatError::Syntax(_))));
    // Python string methods work, as in Hugging Face's Jinja.
    let t = ChatTemplate::from_template("{{ messages[0].content.strip().upper() }}", "", "").unwrap();
    assert_eq!(t.render(&[Message::new("user", "  hi ")], false).unwrap(), "HI");
}

// ---- synthetic vocabularies (GgufWriter) ----

/// A tiny byte-level vocabulary: the 256 byte characters, three merges, and specials.
fn synthetic(edit: impl FnOnce(&mut Vec<(String, Value)>)) -> GgufFile {
    let table = byte_chars();
    let mut tokens: Vec<String> = table.iter().map(|c| c.to_string()).collect();
    let mut types = vec![1i32; 256];
    for t in ["he", "ll", "hell"] {
        tokens.push(t.into());
        types.push(1);
    }
    for (t, ty) in [("<|im_start|>", 3), ("<|im_end|>", 3), ("<tool>", 4)] {
        tokens.push(t.into());
        types.push(ty);
    }
    let mut meta: Vec<(String, Value)> = vec![
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String("smollm".into())),
        ("tokenizer.ggml.tokens".into(), Value::Array(Array::String(tokens))),
        ("tokenizer.ggml.token_type".into(), Value::Array(Array::I32(types))),
        ("tokenizer.ggml.merges".into(), Value::Array(Array::String(vec!["h e".into(), "l l".into(), "he ll".into()]))),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(259)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(260)),
    ];
    edit(&mut meta);
    let mut w = GgufWriter::new();
    for (k, v) in meta {
        w.meta(&k, v);
    }
    gguf::parse_complete(&w.to_bytes()).expect("synthetic GGUF parses")
}

fn byte_chars() -> Vec<char> {
    let mut n = 256u32;
    (0..=255u8)
        .map(|b| {
            if matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF) {
                b as char
            } else {
                n += 1;
                char::from_u32(n - 1).unwrap()
            }
        })
        .collect()
}

fn set(meta: &mut [(String, Value)], key: &str, value: Value) {
    meta.iter_mut().find(|(k, _)| k == key).expect("key present").1 = value;
}

#[test]
fn synthetic_vocabulary_encodes_and_decodes() {
    let tok = Tokenizer::from_gguf(&synthetic(|_| {})).unwrap();
    let ids = tok.encode("<|im_start|>hello<tool>", false).unwrap();
    // Byte tokens are ids 0..256 in byte order; "hello" merges to "hell" + "o".
    assert_eq!(ids, [259, 258, b'o' as u32, 261]);
    assert_eq!(tok.decode(&ids), "hello<tool>", "user-defined tokens render, control tokens do not");
    assert_eq!(tok.decode_with_special(&ids), "<|im_start|>hello<tool>");
    // User-defined tokens are recognised even without special parsing; control tokens are not.
    let plain = tok.encode_with("<|im_start|><tool>", false, false).unwrap();
    assert_eq!(plain.last(), Some(&261));
    assert!(!plain.contains(&259));
    assert!(tok.is_stop(260), "EOS <|im_end|> stops");
    assert!(!tok.add_bos_default(), "no add_bos key: llama.cpp's BPE default is false except for Llama 3");
    assert_eq!(tok.encode("", true).unwrap(), [259]);
}

#[test]
fn hostile_metadata_is_an_error() {
    let err = |edit: fn(&mut Vec<(String, Value)>)| Tokenizer::from_gguf(&synthetic(edit)).unwrap_err();
    assert!(matches!(err(|m| set(m, "tokenizer.ggml.model", Value::String("llama".into()))), TokenizerError::UnsupportedModel(s) if s == "llama"));
    let e = err(|m| set(m, "tokenizer.ggml.pre", Value::String("qwen2".into())));
    assert!(e.to_string().contains("qwen2") && e.to_string().contains("llama-bpe"), "{e}");
    assert!(matches!(err(|m| m.retain(|(k, _)| k != "tokenizer.ggml.pre")), TokenizerError::MissingPreType));
    assert!(matches!(err(|m| m.retain(|(k, _)| k != "tokenizer.ggml.tokens")), TokenizerError::MissingKey(_)));
    assert!(matches!(err(|m| set(m, "tokenizer.ggml.token_type", Value::Array(Array::I32(vec![1; 3])))), TokenizerError::LengthMismatch { .. }));
    assert!(matches!(err(|m| set(m, "tokenizer.ggml.bos_token_id", Value::U32(100_000))), TokenizerError::IdOutOfRange { .. }));
    assert!(matches!(err(|m| set(m, "tokenizer.ggml.eos_token_id", Value::I32(-1))), TokenizerError::IdOutOfRange { .. }));
    assert!(matches!(err(|m| set(m, "tokenizer.ggml.merges", Value::Array(Array::String(vec!["hell".into()])))), TokenizerError::BadMerge { .. }));
    assert!(matches!(err(|m| set(m, "tokenizer.ggml.merges", Value::Array(Array::String(vec!["x ".into()])))), TokenizerError::BadMerge { .. }));
    // Parts in the vocabulary but their concatenation not: the `tokenizers` builder would panic.
    assert!(matches!(err(|m| set(m, "tokenizer.ggml.merges", Value::Array(Array::String(vec!["hell hell".into()])))), TokenizerError::BadMerge { .. }));
    assert!(matches!(err(|m| set(m, "tokenizer.ggml.merges", Value::Array(Array::U32(vec![1])))), TokenizerError::WrongArrayType { .. }));
    assert!(matches!(err(|m| set(m, "tokenizer.ggml.bos_token_id", Value::String("1".into()))), TokenizerError::Gguf(_)));
    let e = err(|m| {
        let Value::Array(Array::I32(types)) = &mut m[3].1 else { unreachable!() };
        types[5] = 9;
    });
    assert!(matches!(e, TokenizerError::BadTokenType { id: 5, value: 9 }), "{e}");
    let e = err(|m| {
        let Value::Array(Array::String(tokens)) = &mut m[2].1 else { unreachable!() };
        tokens[258] = "he".into();
    });
    assert!(matches!(e, TokenizerError::DuplicateToken { .. }), "{e}");
}

#[test]
fn missing_template_falls_back_by_vocabulary() {
    // ChatML markers in the vocabulary: ChatML.
    let file = synthetic(|_| {});
    let tok = Tokenizer::from_gguf(&file).unwrap();
    let chat = ChatTemplate::from_gguf(&file, &tok).unwrap();
    assert_eq!(chat.source(), TemplateSource::ChatMlFallback);
    let prompt = chat.render(&[Message::new("user", "hello")], true).unwrap();
    assert_eq!(prompt, "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n");

    // Llama 3 headers: the Llama 3 format, BOS text included.
    let file = synthetic(|m| {
        let Value::Array(Array::String(tokens)) = &mut m[2].1 else { unreachable!() };
        tokens[259] = "<|begin_of_text|>".into();
        tokens[260] = "<|start_header_id|>".into();
    });
    let tok = Tokenizer::from_gguf(&file).unwrap();
    let chat = ChatTemplate::from_gguf(&file, &tok).unwrap();
    assert_eq!(chat.source(), TemplateSource::Llama3Fallback);
    let prompt = chat.render(&[Message::new("user", " hello ")], true).unwrap();
    assert_eq!(
        prompt,
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    );

    // Neither: a clear error.
    let file = synthetic(|m| {
        let Value::Array(Array::String(tokens)) = &mut m[2].1 else { unreachable!() };
        tokens[259] = "<s>".into();
    });
    let tok = Tokenizer::from_gguf(&file).unwrap();
    let err = ChatTemplate::from_gguf(&file, &tok).unwrap_err();
    assert!(matches!(err, ChatError::NoTemplate));
    assert!(err.to_string().contains("no chat template"), "{err}");
}
