#!/usr/bin/env bash
# Copy the resumable state of the long background runs (issues #15, #16) from runs/ into
# bench/results/*_inprogress/ so that a later session (a fresh machine) can resume them.
#   scripts/snapshot-runs.sh            -> ship_nasn, ship_dccnn, ship_unet, ship_random4, search_vs_random, search_studies,
#                                          loss_compare (those that exist)
set -euo pipefail
cd "$(dirname "$0")/.."
for m in nasn dccnn unet random4; do
  src="runs/ship_$m"; dst="bench/results/ship_${m}_inprogress"
  [ -d "$src" ] || continue
  # a finished run keeps its record elsewhere (bench/results/ship_$m/ or the shipped weights)
  grep -q '"kind": "done"' "$src/events.jsonl" 2>/dev/null && continue
  mkdir -p "$dst"
  files="best.json best.safetensors checkpoint.pt config.json events.jsonl history.json last.json last.safetensors"
  # U-net (3.3M parameters): its checkpoint and weights (67 MB) stay out of the repository
  [ "$m" = unet ] && files="config.json history.json"
  for f in $files; do
    [ -f "$src/$f" ] && cp "$src/$f" "$dst/$f"
  done
  [ -f "runs/ship_$m.log" ] && tail -n 200 "runs/ship_$m.log" > "$dst/log_tail.txt"
done
if [ -d runs/search_vs_random ]; then
  dst=bench/results/search_vs_random_inprogress
  mkdir -p "$dst"
  rm -rf "$dst/runs" && mkdir -p "$dst/runs"
  # the cases are rebuilt from the data (a pure function of it): not copied
  tar -C runs/search_vs_random --exclude=./cases --exclude='*/val_coils' -cf - . | tar -C "$dst/runs" -xf -
  [ -f runs/search_vs_random.log ] && tail -n 200 runs/search_vs_random.log > "$dst/log_tail.txt"
fi
if [ -d runs/search_studies ]; then
  # the paper's node-count and space-B studies (issue #16), each study a protocol run folder
  dst=bench/results/search_studies_inprogress
  rm -rf "$dst/runs" && mkdir -p "$dst/runs"
  tar -C runs/search_studies --exclude='*/cases' --exclude='*/val_coils' -cf - . | tar -C "$dst/runs" -xf -
  [ -f runs/search_studies.log ] && tail -n 200 runs/search_studies.log > "$dst/log_tail.txt"
fi
if [ -d runs/loss_compare ]; then
  # the loss comparison (issue #15): one cpu-preset NasN run per loss, run by its run.sh
  dst=bench/results/loss_compare_inprogress
  rm -rf "$dst" && mkdir -p "$dst"
  tar -C runs/loss_compare --exclude='*.log' -cf - . | tar -C "$dst" -xf -
fi
du -sh bench/results/*_inprogress 2>/dev/null
