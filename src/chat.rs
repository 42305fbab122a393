//! Chat prompts from the model's own Jinja template (`tokenizer.chat_template`).
//!
//! Templates are written for Hugging Face's `apply_chat_template`, so the environment mimics
//! it: `trim_blocks` and `lstrip_blocks` on, `{% break %}`/`{% continue %}` available, Python
//! string and dict methods (`.strip()`, `.split()`, `.items()`, ...) through
//! minijinja-contrib's pycompat, and `raise_exception(msg)` to reject a conversation. The
//! context is `messages`, `add_generation_prompt`, `bos_token` and `eos_token`.
//!
//! A file without a template gets a clearly labelled fallback ([`TemplateSource`]) when its
//! vocabulary reveals the format (ChatML or Llama 3), and an error otherwise: guessing a
//! format for an unknown model would produce a prompt it was never trained on.

use crate::gguf::{GgufError, GgufFile};
use crate::tokenizer::Tokenizer;
use minijinja::{Environment, ErrorKind};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Message { role: role.into(), content: content.into() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("the model has no chat template: tokenizer.chat_template is missing and its vocabulary has neither <|im_start|> (ChatML) nor <|start_header_id|> (Llama 3); use it for plain text completion")]
    NoTemplate,
    #[error("the chat template does not compile: {0}")]
    Syntax(String),
    #[error("the chat template failed: {0}")]
    Render(String),
}

/// Where the template came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TemplateSource {
    /// `tokenizer.chat_template` in the GGUF file.
    Gguf,
    /// Built-in ChatML, because the file has no template but its vocabulary has `<|im_start|>`.
    ChatMlFallback,
    /// Built-in Llama 3 format, because the file has no template but its vocabulary has
    /// `<|start_header_id|>`.
    Llama3Fallback,
    /// Given by the caller ([`ChatTemplate::from_template`]).
    Custom,
}

const CHATML: &str = "{%- for message in messages %}\
{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}\
{%- endfor %}\
{%- if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

const LLAMA3: &str = "{{- bos_token }}\
{%- for message in messages %}\
{{- '<|start_header_id|>' + message.role + '<|end_header_id|>\n\n' + message.content | trim + '<|eot_id|>' }}\
{%- endfor %}\
{%- if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

const NAME: &str = "chat_template";

/// A compiled chat template with the model's BOS/EOS texts.
#[derive(Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    source: TemplateSource,
    text: String,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source", &self.source)
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("template_len", &self.text.len())
            .finish()
    }
}

impl ChatTemplate {
    /// The file's template, or a fallback chosen from the vocabulary (see [`TemplateSource`]).
    pub fn from_gguf(file: &GgufFile, tokenizer: &Tokenizer) -> Result<Self, ChatError> {
        let token_text = |id: Option<u32>| id.and_then(|id| tokenizer.token_text(id)).unwrap_or("").to_owned();
        let (bos, eos) = (token_text(tokenizer.bos_id()), token_text(tokenizer.eos_id()));
        let (source, text) = match file.get_str("tokenizer.chat_template")? {
            Some(t) => (TemplateSource::Gguf, t),
            None if tokenizer.token_id("<|im_start|>").is_some() => (TemplateSource::ChatMlFallback, CHATML),
            None if tokenizer.token_id("<|start_header_id|>").is_some() => (TemplateSource::Llama3Fallback, LLAMA3),
            None => return Err(ChatError::NoTemplate),
        };
        Self::build(source, text, bos, eos)
    }

    /// A template given as text, e.g. to override a broken one.
    pub fn from_template(template: &str, bos_token: &str, eos_token: &str) -> Result<Self, ChatError> {
        Self::build(TemplateSource::Custom, template, bos_token.to_owned(), eos_token.to_owned())
    }

    fn build(source: TemplateSource, text: &str, bos_token: String, eos_token: String) -> Result<Self, ChatError> {
        let mut env = Environment::new();
        // Hugging Face renders with trim_blocks and lstrip_blocks; templates rely on it for
        // their newlines.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_template_owned(NAME, text.to_owned()).map_err(|e| ChatError::Syntax(describe(&e)))?;
        Ok(ChatTemplate { env, source, text: text.to_owned(), bos_token, eos_token })
    }

    /// Render the conversation. With `add_generation_prompt`, the prompt ends with the header
    /// of the assistant's turn (for templates that honour the flag; some always add it).
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String, ChatError> {
        let template = self.env.get_template(NAME).map_err(|e| ChatError::Syntax(describe(&e)))?;
        template
            .render(minijinja::context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
            })
            .map_err(|e| ChatError::Render(describe(&e)))
    }

    pub fn source(&self) -> TemplateSource {
        self.source
    }

    /// The Jinja source in use (the file's, or the fallback's).
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn bos_token(&self) -> &str {
        &self.bos_token
    }

    pub fn eos_token(&self) -> &str {
        &self.eos_token
    }
}

/// The template's own message for `raise_exception`, otherwise minijinja's description with
/// its line number.
fn describe(e: &minijinja::Error) -> String {
    match (e.kind(), e.detail()) {
        (ErrorKind::InvalidOperation, Some(detail)) => detail.to_owned(),
        _ => e.to_string(),
    }
}
