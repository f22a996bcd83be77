#!/usr/bin/env bash
# `tidal score` beside Azure ML's azmlinfsrv 1.5.1: the anchors' JSON score.py (ONNX MLP in run()),
# one worker each, server on CPU 0, wrk on CPU 1, concurrency 1, 8, 32, in one run.
#   ANCHORS=/tmp/anchors bash bench/peers/scoring.sh      # needs `setup_tools.sh azml` in the copy
set -uo pipefail
ANCHORS="${ANCHORS:-/tmp/anchors}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source <(sed -n "/^set -uo/,/^C_small/p" "$ANCHORS/run_all.sh" | sed "s#^HERE=.*#HERE=$ANCHORS#")
export NOTE="${NOTE:-scoring}"
start azml-mlp http://127.0.0.1:5001/ env AZML_BENCH_MODEL=mlp bash "$HERE/azml/run_azml.sh" || exit 1
L --label azml --url 127.0.0.1:5001 --protocol http --model mlp --shape $S_mlp --concurrency 1,8,32 --tool wrk --format azml
stop
start tidal-score http://127.0.0.1:5011/ env PYTHONPATH="$REPO/src" AZML_BENCH_MODEL=mlp ORT_THREADS=1 \
  taskset -c "$SERVER_CPUS" python -m tidal score --entry_script "$HERE/azml/score.py" \
  --model_dir "$HERE/models" --host 127.0.0.1 --port 5011 --worker_count 1 || exit 1
L --label tidal-score --url 127.0.0.1:5011 --protocol http --model mlp --shape $S_mlp --concurrency 1,8,32 --tool wrk --format azml
stop
