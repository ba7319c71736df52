#!/usr/bin/env bash
# Regenerates docs/presets.md's TOML blocks, and crates/simsiam/tests/presets/*.toml, from the
# `simsiam` binary: `scripts/presets-doc.sh [path/to/simsiam]` (default target/debug/simsiam).
# The prose lives in docs/presets.md between the blocks; each block is replaced in place.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${1:-$ROOT/target/debug/simsiam}"
DOC="$ROOT/docs/presets.md"
for preset in lightly-example lightly-cifar10-benchmark satellite cifar10-paper imagenet-paper cifar10-cpu; do
    "$BIN" config --preset "$preset" > "$ROOT/crates/simsiam/tests/presets/$preset.toml"
done
python3 - "$DOC" "$ROOT/crates/simsiam/tests/presets" <<'PY'
import re, sys
doc, golden = sys.argv[1], sys.argv[2]
text = open(doc).read()
def block(m):
    preset = m.group(1)
    toml = open(f"{golden}/{preset}.toml").read()
    return f"<!-- simsiam config --preset {preset} -->\n```toml\n{toml}```"
text = re.sub(r"<!-- simsiam config --preset (\S+) -->\n```toml\n.*?```", block, text, flags=re.S)
open(doc, "w").write(text)
PY
