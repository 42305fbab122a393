#!/usr/bin/env bash
# Run every test: native unit and integration tests (CPU reference, GPU engine on lavapipe),
# browser tests (wasm-pack in headless Chromium) and the page's end-to-end test.
# Installs what it needs first (scripts/setup.sh is idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh

echo "== native tests (cargo test)"
cargo test --all-targets
