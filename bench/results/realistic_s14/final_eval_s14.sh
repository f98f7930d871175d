#!/bin/bash
# Session 14: the finished DCCNN-3 ship training against the shipped NasN (issue #15).
# Waits for the training to end, then: realistic benchmark (zero-filled, both TVs reused from
# session 11's per-slice scores on the same slices and masks; NasN and DCCNN-3 recomputed),
# then the multicoil category (everything recomputed).
set -e
cd "$(dirname "$0")/.."
while pgrep -f "nascsmri train --model dccnn" > /dev/null; do sleep 20; done
grep -q "epoch 42/42" runs/ship_dccnn.log || { echo "ship_dccnn did not finish"; exit 1; }
W=runs/weights
cp runs/ship_dccnn/best.safetensors $W/dccnn_ship.safetensors; cp runs/ship_dccnn/best.json $W/dccnn_ship.json
PY=.venv/bin/python
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
NASN=backend/data/weights/nasn.safetensors
$PY -u bench/realistic.py --data data/brain --out runs/realistic --results bench/results/realistic_s14 \
  --methods zero-filled tv tv-tuned dccnn nasn --categories magnitude raw_phase contrast small_fov noisy \
  --reuse bench/results/realistic_s11/results.json --reuse-methods zero-filled tv tv-tuned \
  --weights nasn=$NASN dccnn=$W/dccnn_ship.safetensors
echo realistic done
$PY -u bench/multicoil.py --data data/brain --out runs/realistic --results bench/results/multicoil_s14 \
  --mask random --max-slices 4 --weights nasn=$NASN dccnn=$W/dccnn_ship.safetensors
echo final_eval done
