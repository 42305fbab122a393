#!/usr/bin/env bash
# Chat with the default model (SmolLM2-135M-Instruct Q4_1) in the terminal.
# Installs what it needs and fetches the model on first run; extra arguments go to `hearth chat`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/fetch-model.sh
cargo build --release --quiet --bin hearth
exec target/release/hearth chat models/SmolLM2-135M-Instruct.Q4_1.gguf "$@"
