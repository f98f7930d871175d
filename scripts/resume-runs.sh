#!/usr/bin/env bash
# Resume the long background runs (issues #15, #16) on a fresh machine from the state that
# scripts/snapshot-runs.sh committed under bench/results/*_inprogress/.
#   scripts/resume-runs.sh [RUN ...]      RUN: nasn dccnn unet random4 coils search studies seeds loss (default: nasn search)
# Each run starts in the background at nice 19 with one thread (THREADS=N scripts/resume-runs.sh
# ... for N, e.g. 2 for a single run on the two cores; logs in runs/*.log); a run
# whose folder already exists in runs/ is resumed from it, not overwritten. Needs the data:
#   nascsmri data prepare --out data/brain
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
for r in ${@:-nasn search}; do  # every name checked before anything starts
  case $r in nasn|dccnn|unet|random4|coils|search|studies|seeds|loss) ;; *) echo "resume-runs: unknown run '$r' (nasn dccnn unet random4 coils search studies seeds loss)" >&2; exit 2 ;; esac
done
[ -d data/brain ] || { echo "resume-runs: data/brain is missing: run '$BIN/nascsmri data prepare --out data/brain'" >&2; exit 2; }
mkdir -p runs
THREADS=${THREADS:-1}
case $THREADS in [1-9]|[1-9][0-9]) ;; *) echo "resume-runs: THREADS must be a number of threads, 1 to 99, not '$THREADS'" >&2; exit 2 ;; esac
start() {  # name, command...: the command in the background, $THREADS threads, nice 19
  local name=$1; shift
  OMP_NUM_THREADS=$THREADS nohup nice -n 19 "$@" > "runs/$name.log" 2>&1 &
  echo "resume-runs: $name started (pid $!, log runs/$name.log)"
}
for run in "${@:-nasn search}"; do
  for r in $run; do  # ("nasn search" as one default word)
    case $r in
      nasn|dccnn|unet|random4)
        # (U-net's snapshot holds no checkpoint, 40 MB: a fresh machine starts it again)
        if [ ! -d "runs/ship_$r" ] && [ -f "bench/results/ship_${r}_inprogress/checkpoint.pt" ]; then
          cp -r "bench/results/ship_${r}_inprogress" "runs/ship_$r" && rm -f "runs/ship_$r/RESUME.md"
        fi
        # U-net: the ship preset's steps and data for 12 epochs (not NasN's 42; README says so);
        # random4: the search protocol's best retrained cell (#16), NasN's ship recipe (finished in
        # session 18, record in bench/results/ship_random4/: a fresh run starts from epoch 1)
        case $r in
          unet) extra=(--model unet --epochs 12) ;;
          random4) extra=(--model nasn --genotype bench/results/search_vs_random_inprogress/runs/genotypes/random4.json) ;;
          *) extra=(--model "$r") ;;
        esac
        start "ship_$r" $BIN/nascsmri train "${extra[@]}" --data data/brain --preset ship --loss l1+ssim \
          --seed 0 --out "runs/ship_$r" --resume --quiet ;;
      coils)  # the shipped NasN fine-tuned on 8 simulated coils (#21): bench/configs/nasn_coils_finetune.json
        start coils_finetune $BIN/nascsmri train --config bench/configs/nasn_coils_finetune.json --data data/brain \
          --out runs/coils_finetune --resume --quiet ;;
      search)
        [ -d runs/search_vs_random ] || cp -r bench/results/search_vs_random_inprogress/runs runs/search_vs_random
        start search_vs_random $BIN/python -u bench/search_vs_random.py --data data/brain --out runs/search_vs_random ;;
      studies)  # reuses the finished protocol (A3) from runs/search_vs_random
        [ -d runs/search_vs_random ] || cp -r bench/results/search_vs_random_inprogress/runs runs/search_vs_random
        [ -d runs/search_studies ] || [ ! -d bench/results/search_studies_inprogress/runs ] \
          || cp -r bench/results/search_studies_inprogress/runs runs/search_studies
        start search_studies $BIN/python -u bench/search_studies.py --data data/brain --out runs/search_studies ;;
      seeds)  # more training seeds of the protocol's leading cells (bench/retrain_seeds.py)
        [ -d runs/search_vs_random ] || cp -r bench/results/search_vs_random_inprogress/runs runs/search_vs_random
        start retrain_seeds $BIN/python -u bench/retrain_seeds.py --data data/brain --out runs/search_vs_random ;;
      loss)
        [ -d runs/loss_compare ] || cp -r bench/results/loss_compare_inprogress runs/loss_compare
        OMP_NUM_THREADS=$THREADS nohup nice -n 19 runs/loss_compare/run.sh > runs/loss_compare/run.log 2>&1 &
        echo "resume-runs: loss started (pid $!, log runs/loss_compare/run.log)" ;;
      *) echo "resume-runs: unknown run '$r' (nasn dccnn unet random4 coils search studies seeds loss)" >&2; exit 2 ;;
    esac
  done
done
