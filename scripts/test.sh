#!/usr/bin/env bash
# Run every test: native unit and integration tests (CPU reference, GPU engine on lavapipe),
# browser tests (wasm-pack in headless Chromium with WebGPU on SwiftShader), and the web page's
# server, UI and end-to-end tests (playwright-core driving Debian's Chromium).
# Installs what it needs first (scripts/setup.sh is idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

echo "== native tests (cargo test)"
cargo test --all-targets

echo "== browser tests (wasm-pack test --headless --chrome)"
# Generation on SwiftShader takes a minute; the runner's default timeout is 20 s.
WASM_BINDGEN_TEST_TIMEOUT=900 CHROMEDRIVER=/usr/bin/chromedriver wasm-pack test --headless --chrome

echo "== web app build and end-to-end tests"
./scripts/build-web.sh
(cd web && npm test)
