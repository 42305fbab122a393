//! The Llama model: hyper-parameters, weights, the streaming loader and the CPU reference.

pub mod config;
pub mod loader;
pub mod reference;
pub mod synthetic;
