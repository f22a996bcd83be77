#!/usr/bin/env bash
# Side by side with the peers, in one run: Triton 2.51 and MLServer 1.7.1 headline rows through
# the bench-anchors harness, then tidal's bench/run.py, all on the same pinned cores.
#   ANCHORS=/tmp/anchors bash bench/peers/headline.sh     # ANCHORS: a set-up copy of shared/bench-anchors
# Rows go to $ANCHORS/work/results/runs.jsonl (render: cd $ANCHORS && python3 report.py --compact);
# tidal's table and JSON go to bench/results/.
set -uo pipefail
ANCHORS="${ANCHORS:-/tmp/anchors}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# run_all.sh's helpers (start/stop/L and the shapes), with its folder pointing at the copy
source <(sed -n "/^set -uo/,/^C_small/p" "$ANCHORS/run_all.sh" | sed "s#^HERE=.*#HERE=$ANCHORS#")
export NOTE="${NOTE:-headline}"
[ -d "$W/triton_repo" ] || "$HERE/tools/venv-ort/bin/python" "$HERE/triton/make_repo.py"
start triton http://127.0.0.1:8000/v2/health/ready bash "$HERE/triton/run_triton.sh" || exit 1
L --label triton-q0 --url 127.0.0.1:8000 --protocol http --model identity --shape $S_identity --concurrency 1,8,32 --tool pa
L --label triton-q0 --url 127.0.0.1:8001 --protocol grpc --model identity --shape $S_identity --concurrency 1,8,32 --tool pa
L --label triton-q0 --url 127.0.0.1:8000 --protocol http --model mlp --shape $S_mlp --concurrency 1,8,32 --tool pa
L --label triton-q0 --url 127.0.0.1:8000 --protocol http --model mlp --shape $S_mlp --concurrency 32 --tool pa --format json
L --label triton-q0 --url 127.0.0.1:8000 --protocol http --model cnn --shape $S_cnn --concurrency 8 --tool pa
stop
"$HERE/tools/venv-mlserver/bin/python" "$HERE/mlserver/make_repo.py" >/dev/null
start mlserver http://127.0.0.1:8080/v2/health/ready bash "$HERE/mlserver/run_mlserver.sh" || exit 1
L --label mlserver-ab2ms --url 127.0.0.1:8080 --protocol http --model mlp --shape $S_mlp --concurrency 32 --tool wrk --format json
stop
cd "$REPO" && PERF_ANALYZER="$HERE/tools/perf_analyzer" python bench/run.py --protocols http,grpc \
  --repeat 2 --window-ms 2000 --anchors-jsonl "$OUT" --label tidal
