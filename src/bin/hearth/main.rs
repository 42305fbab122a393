//! `hearth`: the native command line. Inspect a GGUF, tokenize, dump logits, generate, chat and
//! benchmark, on the CPU reference or the GPU engine.

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    let cli = <cli::Cli as clap::Parser>::parse();
    if let Err(e) = cli::run(cli) {
        eprintln!("hearth: {e}");
        std::process::exit(1);
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod cli;
