#!/bin/bash
# NasN at the cpu preset, one run per loss, same seed and data (issue #15, loss on validation)
cd "$(dirname "$0")/../.."  # the repository root
for loss in l1 ssim l1+ssim; do
  out=runs/loss_compare/nasn_$loss
  resume=""; [ -f $out/checkpoint.pt ] && resume="--resume"
  [ -f $out/events.jsonl ] && grep -q '"kind": "done"' $out/events.jsonl && continue
  OMP_NUM_THREADS=1 .venv/bin/nascsmri train --model nasn --data data/brain --preset cpu --loss $loss --seed 0 \
      --out $out $resume --quiet > runs/loss_compare/nasn_$loss.log 2>&1
done
