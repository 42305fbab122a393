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
command -v wasm-pack >/dev/null || cargo install wasm-pack --locked

./scripts/fetch-model.sh
