#!/usr/bin/env bash
# One idempotent set-up: .venv with the pinned stack (requirements/constraints.txt) and this
# project installed editable. The slow mmcv source build is cached as a wheel outside the
# repo, keyed by mmcv/torch/python/CUDA, so a second run on the same machine takes seconds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
VENV="${VENV:-$ROOT/.venv}"
CONSTRAINTS="$ROOT/requirements/constraints.txt"
CACHE_DIR="${CONCEPT_DISTILL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/concept_distill}"
STEP="start"

fail() { echo "[setup] FAILED at step: $STEP (see the output above)" >&2; }
trap fail ERR
step() { STEP="$1"; echo "[setup] ==> $1"; }
pin() { grep -E "^$1==" "$CONSTRAINTS" | head -n1 | cut -d= -f3; }

step "create virtual environment $VENV"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check -c "$CONSTRAINTS")

# The stamp holds a digest of everything that decides the environment; when it matches,
# the environment is complete and the set-up is a no-op (a second `make test` is fast).
STAMP="$VENV/.concept_distill_stamp"
DIGEST=$(cat "$CONSTRAINTS" "$ROOT/setup.py" "$ROOT/tools/setup_env.sh" | sha256sum | cut -c1-16)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$DIGEST" ] && "$PY" -c "import concept_distill" 2>/dev/null; then
  echo "[setup] environment up to date ($VENV, stamp $DIGEST)"
  exit 0
fi

step "install build tools and torch $(pin torch) / torchvision $(pin torchvision)"
"${PIP[@]}" -q --upgrade pip 2>/dev/null || true
"${PIP[@]}" setuptools wheel ninja numpy torch torchvision

step "mmcv $(pin mmcv) with ops (cached wheel)"
TORCH_VER=$("$PY" -c "import torch; print(torch.__version__.split('+')[0])")
PY_TAG=$("$PY" -c "import sys; print(f'py{sys.version_info[0]}{sys.version_info[1]}')")
# CUDA ops only where a GPU and a CUDA toolchain are both present; a CPU machine with nvcc
# installed still builds the CPU kernels (FORCE_CUDA would otherwise need a device arch).
GPU_ARCH=$("$PY" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability() if torch.cuda.is_available() else '')" 2>/dev/null || true)
if [ -n "$GPU_ARCH" ] && command -v nvcc >/dev/null 2>&1; then
  FLAVOUR="cuda-sm${GPU_ARCH/./}"
  export FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-$GPU_ARCH}"
else
  FLAVOUR="cpu"
  export FORCE_CUDA=0
fi
MMCV_VER=$(pin mmcv)
WHEEL_DIR="$CACHE_DIR/wheels/mmcv-${MMCV_VER}_torch-${TORCH_VER}_${PY_TAG}_${FLAVOUR}"
if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
  echo "[setup] no cached mmcv wheel in $WHEEL_DIR: building from source (7-17 min on 2 cores)"
  BUILD_TMP=$(mktemp -d "${TMPDIR:-/tmp}/mmcv-build.XXXXXX")
  # ninja prints [n/N] per compiled file: keep those lines as the progress display.
  MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" "$PY" -m pip wheel -v --no-deps \
      --no-build-isolation -c "$CONSTRAINTS" "mmcv==$MMCV_VER" -w "$BUILD_TMP" 2>&1 \
    | tee "$BUILD_TMP/build.log" | grep --line-buffered -E '^\s*\[[0-9]+/[0-9]+\]|Successfully|error:' \
    | sed -u -E 's/^\s*(\[[0-9]+\/[0-9]+\]).* -c ([^ ]+) .*/  \1 \2/' || true
  ls "$BUILD_TMP"/mmcv-*.whl >/dev/null 2>&1 || { echo "[setup] mmcv build failed; log: $BUILD_TMP/build.log" >&2; false; }
  mkdir -p "$WHEEL_DIR"
  # Move into place only when complete, so a killed build never leaves a broken cache.
  mv "$BUILD_TMP"/mmcv-*.whl "$WHEEL_DIR/"
fi
"${PIP[@]}" -q "$WHEEL_DIR"/mmcv-*.whl

step "install mmengine, mmdet, mmdet3d, open_clip, spconv and tools"
"${PIP[@]}" mmengine mmdet mmdet3d open_clip_torch spconv-cu120 scipy h5py numba pillow matplotlib tqdm pytest ruff

step "install concept_distill (editable)"
"${PIP[@]}" -q --no-build-isolation --no-deps -e "$ROOT"

step "check imports"
"$PY" - <<'PYCHECK'
import mmcv, mmdet, mmdet3d, mmengine, open_clip, spconv, torch  # noqa: F401
from mmcv.ops import furthest_point_sample  # noqa: F401  (compiled ops present)
import concept_distill  # noqa: F401
print(f"[setup] torch {torch.__version__} mmcv {mmcv.__version__} mmdet3d {mmdet3d.__version__} "
      f"cuda={torch.cuda.is_available()}")
PYCHECK
echo "$DIGEST" > "$STAMP"
echo "[setup] done"
