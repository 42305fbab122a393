#!/usr/bin/env bash
# Run Hearth in your browser: installs what it needs (scripts/setup.sh), builds the web app
# (scripts/build-web.sh) and serves it at http://127.0.0.1:8080/ (PORT=… to change). Open the
# URL in a browser with WebGPU (Chrome/Edge 113+, Safari 26+, Firefox 141+ on Windows) and
# press Download next to the demo model. Ctrl-C stops the server.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh   # also installs Node.js, which runs the server
./scripts/build-web.sh
echo "serve: open the URL below in a WebGPU browser and press Download next to the demo model"
exec node web/serve.mjs --port "${PORT:-8080}"
