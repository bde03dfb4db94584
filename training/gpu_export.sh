#!/usr/bin/env bash
# Copy a training run's results into the device tool's $OUT: files over 15 MiB in pieces
# (the tool returns at most 8 files of 16 MiB), the small ones in one tarball.
# Reassemble here with: cat NAME.part-* > NAME
set -euo pipefail
run_dir=$1 out=$2
for f in "$run_dir"/*.gguf; do
  if [ "$(stat -c %s "$f")" -gt $((15 * 1024 * 1024)) ]; then
    split -b 15M -d "$f" "$out/$(basename "$f").part-"
  else
    cp "$f" "$out/"
  fi
done
tar czf "$out/meta.tar.gz" -C "$run_dir" --exclude='*.gguf' --exclude='hf-*' --exclude='*.safetensors' .
