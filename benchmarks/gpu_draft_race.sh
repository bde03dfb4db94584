#!/usr/bin/env bash
# Is draft-mtp's draft count on a GPU timing-dependent (benchmarks/gpu-draft-counts.md)? One device call:
# the CUDA engine from the trimmed pinned source plus benchmarks/patches/llama-sync-inputs.patch (an
# env-guarded synchronize before a reused graph's inputs are written, the fix proposed upstream for
# llama.cpp#27572; without LLAMA_SYNC_INPUTS the engine is the pinned one), then the same sweep three
# times: as is, with LLAMA_SYNC_INPUTS=1, with CUDA_LAUNCH_BLOCKING=1. Compare each with the CPU
# engine's counts on identical texts (runs/gemma4-mini-Q8_0-cpu-reference.db, same files and flags):
#   PYTHONPATH=src python benchmarks/draft_counts.py benchmarks/runs/gemma4-mini-Q8_0-cpu-reference.db race-ARM.db
#
#   bash benchmarks/gpu_draft_race.sh SRC.tar.xz Q8_0.gguf ASSISTANT.gguf   # from the repository root, on the GPU host
# (SRC: `specsweep engine source --out …`; Q8_0: `specsweep quantize models/gemma4-mini/gemma4-mini-F16.gguf
# --types Q8_0`, sha256 ca78c8dc…; the committed assistant.) Results go to $OUT (or ./race-out).
set -u
src=${1:?trimmed source tarball} q8=${2:?Q8_0 target} assistant=${3:?assistant GGUF}
OUT=${OUT:-$PWD/race-out}; mkdir -p "$OUT"
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}  # this checkout's specsweep (the gguf package must be importable)
S="python3 -m specsweep.cli"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
work=$(mktemp -d)
tar xJf "$src" -C "$work" && patch -s -p1 -d "$work" < benchmarks/patches/llama-sync-inputs.patch || exit 1
# The patched tree must build under its own source id, not the pinned one (engine/source.py checks the
# record's content id; a tarball from before content ids cannot be checked, so it is refused here).
python3 -c "import sys; from specsweep.engine.source import resolve_source; from pathlib import Path
v = resolve_source(Path(sys.argv[1])).info.version
sys.exit(0 if v.endswith('+modified') else 'the patched tree still reads as the pinned source: make SRC with this version of specsweep engine source')" \
  "$work/llama.cpp" || exit 1
$S engine install --cuda --jobs 16 --source "$work/llama.cpp" > "$OUT/build.log" 2>&1 \
  || { tail -20 "$OUT/build.log"; exit 1; }
echo "engine at $(el) s"
for arm in default sync blocking; do
  case $arm in sync) export LLAMA_SYNC_INPUTS=1 ;; blocking) unset LLAMA_SYNC_INPUTS; export CUDA_LAUNCH_BLOCKING=1 ;; esac
  timeout 90 $S run --model "Q8_0=$q8" --draft-model "$assistant" --spec-type draft-mtp --depths 1,3 --reps 2 \
    --max-tokens 120 --db "$OUT/race-$arm.db" > "$OUT/race-$arm.log" 2>&1
  echo "$arm rc=$? at $(el) s"
done
