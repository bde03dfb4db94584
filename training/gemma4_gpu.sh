#!/usr/bin/env bash
# The Gemma-4 miniature on a GPU host in three steps that each fit a 10-minute device call, as run on
# the H100 on 2026-12-06 (benchmarks/gemma4-mini-retrain-h100.md). Run from the repository root with
# the trimmed engine source at .device/llama-src.tar.xz (`specsweep engine source --out …`) and the
# gguf wheel in .whl/; state is kept in /tmp/keep between calls of one warm machine.
#
#   bash training/gemma4_gpu.sh target    [extra gemma4_mini.py flags]   # engine build in the background + target
#   bash training/gemma4_gpu.sh assistant [extra gemma4_mini.py flags]   # the target's answers + the assistant
#   bash training/gemma4_gpu.sh train     [extra gemma4_mini.py flags]   # both in one call, shorter budgets
#                                                                        # (when device time is short)
#   bash training/gemma4_gpu.sh engine                                   # only the engine build (no training)
#   bash training/gemma4_gpu.sh pair DIR                                 # a pair that travelled in DIR becomes the one to measure
#   bash training/gemma4_gpu.sh measure                                  # ladder, published protocol, assistant grid
#                                                                        # (PUBLISHED=0, ASSISTANT_GRIDS=… pick runs)
#   bash training/gemma4_gpu.sh cells                                    # after engine + pair: sequential against
#                                                                        # --side-by-side cells under MPS and slots
#                                                                        # (issue 13; CELLS_RUNS picks the runs)
#   bash training/gemma4_gpu.sh race Q8_0.gguf ASSISTANT.gguf             # benchmarks/gpu_draft_race.sh on the engine
#                                                                          # `target` built (before `measure`, same call)
#
# PATCH=benchmarks/patches/llama-sync-inputs.patch before `target` or `train` builds the engine with that
# patch (engine_behind); without it the engine is the pinned one.
#
# CALL_S=SECONDS shortens the target or measure call (defaults 585 and 560) when device time is short;
# SMOKE=0 skips the target step's one-minute smoke run of the recipe.
#
# Results go to $OUT (the device tool returns at most 8 files of 16 MiB: the target GGUF in pieces).
set -u
step=${1:?target, assistant, train, engine, pair, measure, cells or race}; shift
T0=$(date +%s)
K=/tmp/keep R=/tmp/keep/run W=/tmp/keep/w
elapsed() { echo $(( $(date +%s) - T0 )); }
# Each database as one file (no WAL beside it): the device tool returns files, not their journals.
single_file_dbs() { python3 -c "import sqlite3, sys
for db in sys.argv[1:]: sqlite3.connect(db).execute('PRAGMA journal_mode=DELETE')" "$@"; }
# The target's ladder, every rung with the importance matrix (as the published files and the demo).
make_ladder() { $S quantize $R/gemma4-mini-F16.gguf --types Q8_0,Q5_K_S,IQ4_XS,IQ3_M,IQ2_M --imatrix auto \
  --out $W/ladder > $W/q.log 2>&1 || { tail $W/q.log; exit 1; }; }
# The converter's source in $K, and the CUDA engine built from it in a session of its own: the build
# outlives the training call and is done (~7 min) before `measure` needs it. PATCH=FILE builds it with
# that patch applied (its own source id, "+modified"), e.g. benchmarks/patches/llama-sync-inputs.patch,
# so that benchmarks/gpu_draft_race.sh on this warm machine finds its engine already built (run it with
# SPECSWEEP_CACHE=/tmp/ss).
engine_behind() {
  local src=.device/llama-src.tar.xz
  mkdir -p $K && tar xJf $src -C $K || exit 1
  if [ -n "${PATCH:-}" ]; then
    mkdir -p $K/patched && tar xJf $src -C $K/patched && patch -s -p1 -d $K/patched < "$PATCH" || exit 1
    src=$K/patched/llama.cpp
  fi
  pgrep -f "engine install" > /dev/null || setsid nohup $S engine install --cuda --jobs 12 --source $src \
      > $K/build.log 2>&1 < /dev/null &
}
wait_engine() { while pgrep -f "engine install" > /dev/null; do sleep 5; done; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD/src:/tmp/site SPECSWEEP_CACHE=/tmp/ss PYTHONUNBUFFERED=1
S="python3 -m specsweep.cli"

case $step in
target)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  engine_behind
  # The smoke's own sizes come after "$@" so they win (argparse keeps the last), the recipe flags still apply.
  # SMOKE=0 skips it when device time is short (its ~1 min then goes to training).
  if [ "${SMOKE:-1}" = 0 ]; then
    echo "smoke run skipped"
  else
    ( cd training && timeout 150 python3 gemma4_mini.py "$@" --out /tmp/smoke --llama-cpp $K/llama.cpp --max-pairs 400 \
        --reasoning-pairs 200 --layers 4 --target-steps 3 --assistant-steps 3 --answers 64 --sample-batch 64 \
        --answer-tokens 32 --batch 8 --seq-len 128 > $OUT/smoke.log 2>&1 ) || { tail -60 $OUT/smoke.log; exit 1; }
    echo "smoke run ok at $(elapsed) s"
  fi
  left=$(( ${CALL_S:-585} - $(elapsed) ))
  ( cd training && timeout $left python3 gemma4_mini.py --stage target --out $R --llama-cpp $K/llama.cpp \
      --target-budget-s $(( left - 130 )) "$@" > $OUT/target.log 2>&1 ); echo "target rc=$? at $(elapsed) s"
  grep -vE "^\[sample\]" $OUT/target.log | tail -28
  cp $R/target.json $OUT/ && split -b 15M -d $R/gemma4-mini-F16.gguf $OUT/gemma4-mini-F16.gguf.part-
  tar czf $OUT/tokenizer.tar.gz -C $R tokenizer
  ;;
train)
  # Target and assistant in one call (`--stage all`: the corpus is built once), for a session whose
  # device time has room for one training call and one `measure`, not three calls. The fixed costs
  # are v6's on the H100 (corpus 78 s, the target's samples and conversion ~40 s, the assistant's two
  # sample budgets, its evaluation and conversion ~35 s, 20 s spare); the target gets 55% of the rest.
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  engine_behind
  call_s=${CALL_S:-585} sample_s=30
  train_s=$(( call_s - 78 - 40 - 2 * sample_s - 35 - 20 ))
  ( cd training && timeout $(( call_s - $(elapsed) - 10 )) python3 gemma4_mini.py --stage all --out $R \
      --llama-cpp $K/llama.cpp --target-budget-s $(( train_s * 55 / 100 )) --assistant-budget-s $(( train_s * 45 / 100 )) \
      --sample-budget-s $sample_s "$@" > $K/train.log 2>&1 ); echo "train rc=$? at $(elapsed) s"
  grep -vE "^\[sample\]|^sample" $K/train.log | cut -c1-300 | tail -30
  # At most 8 files come back: the target in pieces, the assistant, and one archive of the records
  # (untar it beside the pieces and that folder is both of training/adopt_pair.sh's arguments).
  split -b 15M -d $R/gemma4-mini-F16.gguf $OUT/gemma4-mini-F16.gguf.part-
  cp $R/gemma4-mini-assistant-F16.gguf $OUT/
  tar czf $R/tokenizer.tar.gz -C $R tokenizer && cp $K/train.log $R/
  tar czf $OUT/records.tar.gz -C $R tokenizer.tar.gz train.log $(cd $R && ls target.json training.json MODEL_CARD.md loss.png 2>/dev/null)
  ;;
assistant)
  ( cd training && timeout 570 python3 gemma4_mini.py --stage assistant --out $R --llama-cpp $K/llama.cpp \
      --assistant-budget-s 290 --sample-budget-s 50 "$@" > $OUT/assistant.log 2>&1 ); echo "assistant rc=$? at $(elapsed) s"
  grep -vE "^\[sample\]" $OUT/assistant.log | tail -20
  cp $R/training.json $R/MODEL_CARD.md $R/loss.png $R/gemma4-mini-assistant-F16.gguf $OUT/
  ;;
measure)
  wait_engine
  mkdir -p $W/asst
  make_ladder
  $S quantize $R/gemma4-mini-assistant-F16.gguf --types Q8_0,Q4_K_M --out $W/asst > $W/qa.log 2>&1 || tail $W/qa.log
  # Databases in $W: their server logs land beside them, and the device tool returns only 8 files.
  # The published protocol twice: as users run the engine (CUDA graphs on: the speed figures), and with
  # GGML_CUDA_DISABLE_GRAPHS=1, the drafter's own acceptance (graphs spoil the pinned engine's MTP drafts,
  # benchmarks/gpu-draft-counts.md). The assistant grids compare acceptance, so they run without graphs.
  # PUBLISHED=0 skips the two published runs and ASSISTANT_GRIDS picks the grids, e.g. to add a grid a
  # short session left out (after `engine` and `pair`): PUBLISHED=0 ASSISTANT_GRIDS=Q4_K_M … measure
  if [ "${PUBLISHED:-1}" != 0 ]; then
    timeout 250 $S run --models "$W/ladder/*.gguf" --draft-model $R/gemma4-mini-assistant-F16.gguf \
      --protocol published --db $W/published.db > $OUT/published.log 2>&1
    echo "published rc=$? at $(elapsed) s"
    GGML_CUDA_DISABLE_GRAPHS=1 timeout 250 $S run --models "$W/ladder/*.gguf" \
      --draft-model $R/gemma4-mini-assistant-F16.gguf --protocol published --db $W/published-nographs.db \
      > $W/published-nographs.log 2>&1
    echo "published, graphs off rc=$? at $(elapsed) s"
  fi
  for a in ${ASSISTANT_GRIDS:-Q8_0 Q4_K_M}; do
    left=$(( ${CALL_S:-560} - $(elapsed) ))
    # `timeout 0` would mean no limit at all: skip a grid there is no time left for.
    if [ $left -lt 30 ]; then echo "assistant $a: skipped, ${left} s left"; continue; fi
    GGML_CUDA_DISABLE_GRAPHS=1 timeout $left $S run --models "$W/ladder/*.gguf" \
      --draft-model $W/asst/gemma4-mini-assistant-$a.gguf --protocol published --depths 1-4 \
      --db $W/assistant-$a-nographs.db > $OUT/assistant-$a.log 2>&1
    echo "assistant $a rc=$? at $(elapsed) s"
  done
  single_file_dbs $W/*.db && cp $W/*.db $OUT/
  ;;
cells)
  # Issue 13: the published protocol with CUDA graphs off (one-slot MTP drafts replay exactly only
  # without graphs: benchmarks/gpu-draft-counts.md), sequential against K cells at once on one-slot
  # servers sharing the GPU through the sweep's own MPS daemon, and K slots of one server per cell.
  # Each database and log goes to $OUT as soon as its run ends.
  wait_engine
  mkdir -p $W
  nvidia-smi --query-gpu=name,memory.total,driver_version,compute_mode --format=csv,noheader
  [ -d $W/ladder ] || make_ladder
  echo "ladder at $(elapsed) s"
  sweep() {  # NAME LIMIT_S [run flags]: one published sweep, graphs off, into $W/NAME.db
    local name=$1 limit=$2; shift 2
    GGML_CUDA_DISABLE_GRAPHS=1 timeout $limit $S run --models "$W/ladder/*.gguf" \
      --draft-model $R/gemma4-mini-assistant-F16.gguf --protocol published --db $W/$name.db "$@" > $W/$name.log 2>&1
    echo "$name rc=$? at $(elapsed) s"; grep -E "requests measured|warning" $W/$name.log
    single_file_dbs $W/$name.db && cp $W/$name.db $OUT/
  }
  for run in ${CELLS_RUNS:-seq cells4 cells8 slots4}; do
    case $run in
      seq) sweep seq 200 ;;
      cells*) sweep $run 150 --parallel ${run#cells} --side-by-side cells ;;
      slots*) sweep $run 150 --parallel ${run#slots} ;;
    esac
  done
  tar czf $OUT/logs.tar.gz -C $W $(cd $W && ls *.log)
  ;;
engine)
  # The committed pair (59 MB) and the source (7 MB) do not fit one call's 64 MiB: build here, then
  # `pair` in the next call with the pair carried (e.g. .device/pair).
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  timeout 560 $S engine install --cuda --jobs 16 --source .device/llama-src.tar.xz > $OUT/build.log 2>&1
  echo "engine rc=$? at $(elapsed) s"; tail -3 $OUT/build.log
  ;;
pair)
  mkdir -p $R && cp "${1:?DIR with gemma4-mini-F16.gguf and gemma4-mini-assistant-F16.gguf}"/gemma4-mini-*F16.gguf $R/ \
    && ls -l $R
  ;;
race)
  wait_engine
  mkdir -p $K/race
  OUT=$K/race timeout 200 bash benchmarks/gpu_draft_race.sh .device/llama-src.tar.xz "$@"; echo "race rc=$? at $(elapsed) s"
  single_file_dbs $K/race/*.db
  tar czf $OUT/race.tar.gz -C $K race  # one file: the device tool returns at most 8
  ;;
*) echo "unknown step $step: target, assistant, train, engine, pair, measure, cells or race" >&2; exit 2 ;;
esac
