#!/usr/bin/env bash
# Install what building and testing Hearth needs on a Debian machine with Rust (idempotent):
# Debian packages (Chromium + driver for browser tests, Mesa's lavapipe Vulkan for native wgpu,
# binaryen's wasm-opt), the wasm32 target, wasm-pack, and the default model.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pkg in chromium chromium-driver mesa-vulkan-drivers binaryen; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}"
  sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

rustup target list --installed | grep -q '^wasm32-unknown-unknown$' || rustup target add wasm32-unknown-unknown
export PATH="$HOME/.cargo/bin:$PATH"
command -v wasm-pack >/dev/null || cargo install wasm-pack --locked
# The browser tests' runner must match the wasm-bindgen version in Cargo.lock (wasm-pack would
# otherwise try to download it). Its own lockfile pins a crate the index lacks: no --locked.
bindgen=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/[^0-9.]/, ""); print}' Cargo.lock)
if ! wasm-bindgen --version 2>/dev/null | grep -q " $bindgen\b"; then
  cargo install wasm-bindgen-cli --version "$bindgen"
fi
if ! command -v node >/dev/null; then
  sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq nodejs npm >/dev/null
fi
(cd web && { [ -d node_modules/playwright-core ] || npm ci --no-audit --no-fund; })

./scripts/fetch-model.sh
