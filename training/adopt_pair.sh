#!/usr/bin/env bash
# Make a Gemma-4 pair that came back from the GPU host (training/gemma4_gpu.sh target + assistant) the
# committed models/gemma4-mini, and measure it on this machine as benchmarks/gemma4-mini-v5.md did:
#
#   bash training/adopt_pair.sh TARGET_DIR ASSISTANT_DIR [WORK]
#
# TARGET_DIR: what `target` returned (gemma4-mini-F16.gguf.part-*, tokenizer.tar.gz);
# ASSISTANT_DIR: what `assistant` returned (gemma4-mini-assistant-F16.gguf, training.json, MODEL_CARD.md,
# loss.png). What `train` returned is both: its records.tar.gz is unpacked there first.
# WORK (default /tmp/adopt) gets the demo's output, the assistant grid and the runs.
# It writes the files and the sha256 in src/specsweep/trained.py; committing them, the card's measured
# section and the benchmark page stay with whoever reads the figures.
set -euo pipefail
target_dir=${1:?target call output} assistant_dir=${2:?assistant call output} work=${3:-/tmp/adopt}
here=$(cd "$(dirname "$0")/.." && pwd)
models=$here/models/gemma4-mini S=$here/.venv/bin/specsweep
mkdir -p "$work"
for dir in "$target_dir" "$assistant_dir"; do
  if [ -f "$dir/records.tar.gz" ] && [ ! -f "$dir/training.json" ]; then tar xzf "$dir/records.tar.gz" -C "$dir"; fi
done
cat "$target_dir"/gemma4-mini-F16.gguf.part-* > "$work/gemma4-mini-F16.gguf"
# The assistant stage records both files' sha256 in training.json: the reassembled target and the
# assistant must match it, and those are the sha256 trained.py then verifies on every load.
python3 - "$work/gemma4-mini-F16.gguf" "$assistant_dir/gemma4-mini-assistant-F16.gguf" "$assistant_dir/training.json" \
    "$here/src/specsweep/trained.py" <<'EOF'
import hashlib, json, re, sys
from pathlib import Path
target, assistant, record, source = map(Path, sys.argv[1:])
expected = json.loads(record.read_text())["gguf"]
text = source.read_text()
for path, name in ((target, "gemma4-mini-F16.gguf"), (assistant, "gemma4-mini-assistant-F16.gguf")):
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != expected[name]["sha256"]:
        sys.exit(f"{path}: sha256 {digest[:16]}…, training.json says {expected[name]['sha256'][:16]}…")
    text, n = re.subn(rf'("gemma4-mini/{re.escape(name)}",\s*")[0-9a-f]{{64}}"', rf'\g<1>{digest}"', text)
    assert n == 1, name
source.write_text(text)
EOF
cp "$work/gemma4-mini-F16.gguf" "$assistant_dir"/gemma4-mini-assistant-F16.gguf "$assistant_dir"/training.json \
  "$assistant_dir"/MODEL_CARD.md "$assistant_dir"/loss.png "$models/"
tar xzf "$target_dir/tokenizer.tar.gz" -C "$models"
echo "adopted: $(git -C "$here" status --short models src/specsweep/trained.py | wc -l) files changed"
"$S" demo --out "$work/demo" > "$work/demo.log" 2>&1 && tail -22 "$work/demo.log"
"$S" quantize "$models/gemma4-mini-assistant-F16.gguf" --types Q8_0,Q4_K_M --out "$work/A" > "$work/qa.log" 2>&1
for a in Q8_0 Q4_K_M; do
  "$S" run --models "$work/demo/models/gemma4-mini-*.gguf" --draft-model "$work/A/gemma4-mini-assistant-$a.gguf" \
    --protocol published --depths 1-4 --db "$work/assistant-$a.db" > "$work/assistant-$a.log" 2>&1
done
PYTHONPATH=$here/src "$here/.venv/bin/python" "$here/benchmarks/rep_sigma.py" "$work/demo/demo.db"
