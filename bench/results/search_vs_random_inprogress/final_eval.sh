#!/bin/bash
# Evaluate the finished NasN ship training (issue #15); DCCNN-3 = its ship run's best so far.
set -e
cd "$(dirname "$0")/.."
W=runs/weights
cp runs/ship_nasn/best.safetensors $W/nasn_ship.safetensors; cp runs/ship_nasn/best.json $W/nasn_ship.json
cp bench/results/ship_dccnn_inprogress/best.safetensors $W/dccnn_ship_ep11.safetensors
cp bench/results/ship_dccnn_inprogress/best.json $W/dccnn_ship_ep11.json
PY=.venv/bin/python
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
$PY -u bench/realistic.py --data data/brain --out runs/realistic --results runs/realistic_final/s11 \
  --methods zero-filled tv tv-tuned dccnn nasn --categories magnitude raw_phase contrast small_fov noisy \
  --val-files 1 --tv-weights 0.01 0.03 0.1 \
  --weights nasn=$W/nasn_ship.safetensors dccnn=$W/dccnn_ship_ep11.safetensors
for mask in ${MC_MASKS:-}; do
  $PY -u bench/multicoil.py --data data/brain --out runs/realistic --results runs/realistic_final/multicoil_$mask \
    --mask $mask --max-slices 4 --weights nasn=$W/nasn_ship.safetensors dccnn=$W/dccnn_ship_ep11.safetensors
done
echo final_eval done
