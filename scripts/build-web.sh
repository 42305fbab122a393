#!/usr/bin/env bash
# Build the web app: the wasm engine into www/pkg (wasm-pack, release), then stamp the build
# version the service worker caches the app shell under (www/pkg/build-version.js, imported by
# www/sw.js). The version is a hash of every file in www/, so any change to the page, the worker,
# the styles, the icons or the wasm makes browsers install the new shell and drop the old cache.
#
# wasm-opt: binaryen older than 119 (Debian 12 ships 108) rewrites the module so that
# wasm-bindgen's start-up fails with "WebAssembly.Table.set(): Argument 1 is invalid for table",
# so wasm-pack's own wasm-opt step is turned off and a new enough wasm-opt is run here instead
# (WASM_OPT=0 skips it). Unoptimized, the module is about 20% larger and works the same.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

if ! command -v wasm-pack >/dev/null; then
  echo "build-web: wasm-pack is missing; run scripts/setup.sh" >&2
  exit 1
fi
wasm-pack build --target web --out-dir www/pkg --release --no-opt

wasm=www/pkg/hearth_bg.wasm
binaryen=$( (wasm-opt --version 2>/dev/null || true) | grep -o 'version [0-9]*' | grep -o '[0-9]*' || true)
if [ "${WASM_OPT:-1}" != 0 ] && [ -n "$binaryen" ] && [ "$binaryen" -ge 119 ]; then
  wasm-opt -O2 "$wasm" -o "$wasm.opt" && mv "$wasm.opt" "$wasm"
  echo "build-web: optimized with wasm-opt $binaryen"
else
  echo "build-web: wasm-opt ${binaryen:-missing} is older than 119 (or WASM_OPT=0): keeping the unoptimized module"
fi

version=$(find www -type f ! -path www/pkg/build-version.js ! -name .gitignore -print0 \
  | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
cat > www/pkg/build-version.js <<JS
// Written by scripts/build-web.sh; www/sw.js caches the app shell under this version.
self.HEARTH_BUILD = "$version";
JS
echo "build-web: $wasm $(stat -c %s "$wasm") bytes ($(gzip -9c "$wasm" | wc -c) gzipped), build $version"
