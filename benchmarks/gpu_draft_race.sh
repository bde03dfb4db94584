#!/usr/bin/env bash
# Why are draft-mtp's draft counts on a GPU not reproducible (benchmarks/gpu-draft-counts.md)? One device
# call: the CUDA engine from the trimmed pinned source, then the same sweep once per arm, each arm one
# switch of the engine's own:
#   default   as built
#   nographs  GGML_CUDA_DISABLE_GRAPHS=1: no CUDA graphs (one-slot decoding uses them, four slots do not)
#   noreuse   LLAMA_GRAPH_REUSE_DISABLE=1: llama.cpp rebuilds every graph instead of reusing it
#   blocking  CUDA_LAUNCH_BLOCKING=1: every kernel launch waits, so no asynchronous overlap is left
#   sync      LLAMA_SYNC_INPUTS=1 with PATCH=benchmarks/patches/llama-sync-inputs.patch: a synchronize
#             before a reused graph's inputs are written (the fix proposed upstream for llama.cpp#27572)
# Run on 2026-12-06 (H100) with ARMS="default sync blocking": neither sync nor blocking made the counts
# reproducible. Each arm's run records its variable (provenance engine.environment, named in the
# report's footer). Compare two arms, or an arm with the CPU engine's counts on identical texts:
#   PYTHONPATH=src python benchmarks/draft_counts.py benchmarks/runs/gemma4-mini-Q8_0-cpu-reference.db race-ARM.db
#
#   ARMS="default nographs noreuse" bash benchmarks/gpu_draft_race.sh SRC.tar.xz Q8_0.gguf ASSISTANT.gguf
# from the repository root on the GPU host (SRC: `specsweep engine source --out …`; Q8_0: `specsweep quantize
# F16.gguf --types Q8_0` of the pair the CPU reference was run on; its assistant). Results go to $OUT (or
# ./race-out); run it with SPECSWEEP_CACHE set to reuse an engine already built on that machine.
set -u
src=${1:?trimmed source tarball} q8=${2:?Q8_0 target} assistant=${3:?assistant GGUF}
ARMS=${ARMS:-default nographs noreuse}
OUT=${OUT:-$PWD/race-out}; mkdir -p "$OUT"
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}  # this checkout's specsweep (the gguf package must be importable)
S="python3 -m specsweep.cli"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
if [ -n "${PATCH:-}" ]; then
  work=$(mktemp -d)
  tar xJf "$src" -C "$work" && patch -s -p1 -d "$work" < "$PATCH" || exit 1
  # The patched tree must build under its own source id, not the pinned one (engine/source.py checks the
  # record's content id; a tarball from before content ids cannot be checked, so it is refused here).
  python3 -c "import sys; from specsweep.engine.source import resolve_source; from pathlib import Path
v = resolve_source(Path(sys.argv[1])).info.version
sys.exit(0 if v.endswith('+modified') else 'the patched tree still reads as the pinned source: make SRC with this version of specsweep engine source')" \
    "$work/llama.cpp" || exit 1
  src=$work/llama.cpp
fi
$S engine install --cuda --jobs 16 --source "$src" > "$OUT/build.log" 2>&1 || { tail -20 "$OUT/build.log"; exit 1; }
echo "engine at $(el) s"
for arm in $ARMS; do
  case $arm in
    default)  env=() ;;
    nographs) env=(GGML_CUDA_DISABLE_GRAPHS=1) ;;
    noreuse)  env=(LLAMA_GRAPH_REUSE_DISABLE=1) ;;
    blocking) env=(CUDA_LAUNCH_BLOCKING=1) ;;
    sync)     [ -n "${PATCH:-}" ] || { echo "sync needs PATCH=benchmarks/patches/llama-sync-inputs.patch"; exit 2; }
              env=(LLAMA_SYNC_INPUTS=1) ;;
    *) echo "unknown arm $arm: default nographs noreuse blocking sync" >&2; exit 2 ;;
  esac
  env "${env[@]}" timeout 90 $S run --model "Q8_0=$q8" --draft-model "$assistant" --spec-type draft-mtp --depths 1,3 \
    --reps 2 --max-tokens 120 --db "$OUT/race-$arm.db" > "$OUT/race-$arm.log" 2>&1
  echo "$arm rc=$? at $(el) s"
done
