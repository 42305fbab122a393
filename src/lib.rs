//! Hearth: Llama-family GGUF models on the GPU through WebGPU, in the browser and natively.
//!
//! Layers, bottom up: [`gguf`] reads the file format, [`quant`] knows the tensor block formats,
//! [`model`] turns metadata and tensors into a Llama model (config, weights, the CPU reference
//! forward pass, the streaming loader), [`tokenizer`] and [`chat`] turn text into tokens,
//! [`sampling`] picks the next token, [`gpu`] runs the model through wgpu (native or WebGPU).

pub mod chat;
pub mod engine;
pub mod gguf;
pub mod gpu;
pub mod model;
pub mod quant;
pub mod sampling;
pub mod tokenizer;
#[cfg(target_arch = "wasm32")]
pub mod web;
