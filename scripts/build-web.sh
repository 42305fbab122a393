#!/usr/bin/env bash
# Build the web app: the wasm engine into www/pkg (wasm-pack, release), then stamp the build
# version the service worker caches the app shell under (www/pkg/build-version.js, imported by
# www/sw.js). The version is a hash of every file in www/, so any change to the page, the worker,
# the styles, the icons or the wasm makes browsers install the new shell and drop the old cache.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

if ! command -v wasm-pack >/dev/null; then
  echo "build-web: wasm-pack is missing; run scripts/setup.sh" >&2
  exit 1
fi
wasm-pack build --target web --out-dir www/pkg --release

version=$(find www -type f ! -path www/pkg/build-version.js ! -name .gitignore -print0 \
  | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
cat > www/pkg/build-version.js <<JS
// Written by scripts/build-web.sh; www/sw.js caches the app shell under this version.
self.HEARTH_BUILD = "$version";
JS
wasm=www/pkg/hearth_bg.wasm
echo "build-web: $wasm $(stat -c %s "$wasm") bytes ($(gzip -9c "$wasm" | wc -c) gzipped), build $version"
