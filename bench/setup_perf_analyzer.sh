#!/usr/bin/env bash
# Install the real perf_analyzer (bundled in the tritonclient 2.45.0 manylinux wheel) into
# bench/.work/venv-pa and write the wrapper bench/.work/perf_analyzer. Idempotent.
# It needs Debian's libb64-0d, and libcudart.so.12 (from the nvidia-cuda-runtime-cu12 wheel)
# only so the dynamic loader is satisfied: no GPU is used.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="$HERE/.work"
mkdir -p "$WORK"
if ! dpkg -s libb64-0d >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libb64-0d
fi
if [ ! -x "$WORK/venv-pa/bin/perf_analyzer" ]; then
  python3 -m venv "$WORK/venv-pa"
  "$WORK/venv-pa/bin/pip" install -q "tritonclient[all]==2.45.0" nvidia-cuda-runtime-cu12
fi
CUDART="$("$WORK/venv-pa/bin/python" -c 'import nvidia.cuda_runtime, os; print(os.path.join(list(nvidia.cuda_runtime.__path__)[0], "lib"))')"
cat > "$WORK/perf_analyzer" <<WRAP
#!/usr/bin/env bash
export LD_LIBRARY_PATH="$CUDART\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
exec "$WORK/venv-pa/bin/perf_analyzer" "\$@"
WRAP
chmod +x "$WORK/perf_analyzer"
"$WORK/perf_analyzer" --version 2>/dev/null || true
echo "perf_analyzer: $WORK/perf_analyzer"
