#!/bin/bash
# dhrd train --alpha auto on CB (SmolLM2, all 250 rows, candidates pooled and alpha 1): killed -9 once the alpha 1
# trial has a checkpoint, then run again to the end (results/auto-cli-cb-smollm2-cpu/). Logs: runs/auto-cli-cb.{1,2}.log
set -u
cd "$(dirname "$0")/.."
OUT=runs/auto-cli-cb
rm -rf $OUT
CMD=(dhrd train --task cb --output-dir $OUT --epochs 1 --learning-rate 1e-3 --seed 1 --alpha auto --alpha-candidates 0,1 --lm-scope-candidates all)
export OMP_NUM_THREADS=1
setsid /usr/bin/time -v "${CMD[@]}" > runs/auto-cli-cb.1.log 2>&1 &
PID=$!
while ! ls $OUT/alpha-search/checkpoints/trial-alpha1-all/checkpoint-*/trainer_state.json >/dev/null 2>&1; do
  kill -0 $PID 2>/dev/null || { echo "ended before a checkpoint"; exit 1; }
  sleep 5
done
echo "killing at $(ls -d $OUT/alpha-search/checkpoints/trial-alpha1-all/checkpoint-*) $(date)"
kill -9 -- -$(ps -o pgid= $PID | tr -d ' ')
sleep 3
/usr/bin/time -v "${CMD[@]}" > runs/auto-cli-cb.2.log 2>&1
echo "rerun rc $? $(date)"
