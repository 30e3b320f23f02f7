#!/usr/bin/env bash
# jaxkin on a GPU machine without network access, in one command: install it (no dependencies), list the devices,
# run the network and fit tests, time a train step, a whole-body prediction and a whole-body LM fit, and write a
# short Markdown report.
#
#     bash benchmarks/gpu_check.sh [--quick] [REPORT_DIR]
#
# The report (gpu_check.md) and the logs of each step go to $OUT when it is set, else to REPORT_DIR. The Python
# is $PYTHON (default python3); it must already hold JAX (with CUDA on a GPU machine), flax, optax, orbax, scipy and
# pytest. nibabel, if that Python lacks it, is installed from a pure-Python wheel in benchmarks/wheels/ (git-ignored;
# put it there on a machine with network access: pip download nibabel --no-deps -d benchmarks/wheels). Nothing
# is downloaded: pip runs with --no-index.
#
# Install: a virtual environment in a temporary folder that sees the Python's own packages, with nibabel from the
# wheel and jaxkin (pip install --no-deps --no-build-isolation -e .); where that is impossible (no venv module, no
# setuptools>=77) nibabel is unpacked with --target and the checkout alone is on PYTHONPATH; the report says which.
# The tests and benchmarks import this checkout's jaxkin in every case (it is first on PYTHONPATH).
#
# Sizes: by default the GPU sizes (the network tests with their slow ones, the fit tests without; train step
# exp4_1 batch 5 at 112 x 112 x 64; prediction of 400 slices of 112 x 112 x 62 frames in batches of 32; the LM fit
# of 2.3 M body TACs, the voxel count of the CPU study's whole body, in chunks of 262,144), each step under a time
# limit so the whole stays under 5 minutes on a GPU. --quick shrinks every size (the fast tests only, 32 x 32
# slices, 16,384 TACs) so that the same command finishes on a CPU. Exit status: 0 when every step passed, 1 if not.
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QUICK=0
DEST=""
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=1 ;;
    -h|--help) sed -n '2,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "gpu_check.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
    *) DEST=$arg ;;
  esac
done
DEST=${OUT:-$DEST}
if [ -z "$DEST" ]; then
  echo "gpu_check.sh: give a report folder (or set OUT)" >&2
  exit 2
fi
mkdir -p "$DEST/logs" || exit 2
DEST=$(cd "$DEST" && pwd)
REPORT="$DEST/gpu_check.md"
PY=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/jaxkin-gpu-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export PIP_NO_INDEX=1 PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
export JAXKIN_CACHE_DIR=off  # time compilation as a first run does
cd "$ROOT" || exit 2
START=$SECONDS
FAILED=0
STEPS=""

# --- install -----------------------------------------------------------------------------------------------------
INSTALL_NOTES=""
note() { INSTALL_NOTES+="- $1"$'\n'; echo "$1"; }
LOG_INSTALL="$DEST/logs/install.log"
: >"$LOG_INSTALL"
# A venv without its own pip whose .pth lists the Python's site folders: it sees JAX, pip and setuptools as they
# are (also when $PYTHON is itself a venv, which --system-site-packages would not see through), and takes installs.
IN_VENV=0
HOST_SITE=$("$PY" -c 'import sys; print("\n".join(p for p in sys.path if p.endswith(("site-packages", "dist-packages"))))')
if "$PY" -m venv --without-pip "$WORK/venv" >>"$LOG_INSTALL" 2>&1; then
  VPY="$WORK/venv/bin/python"
  printf '%s\n' "$HOST_SITE" >"$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/_host_site.pth"
  if "$VPY" -c "import jax, flax, optax, pip" >>"$LOG_INSTALL" 2>&1; then
    PY=$VPY IN_VENV=1
    note "virtual environment over the Python's packages: $WORK/venv (removed at the end)"
  fi
fi
[ "$IN_VENV" = 1 ] || note "no virtual environment (see logs/install.log): nibabel goes to a --target folder"
if "$PY" -c "import nibabel" 2>/dev/null; then
  note "nibabel: already installed ($("$PY" -c 'import nibabel; print(nibabel.__version__)'))"
else
  target=()
  [ "$IN_VENV" = 1 ] || { target=(--target "$WORK/site"); export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"; }
  if "$PY" -m pip install --no-index --no-deps --find-links "$ROOT/benchmarks/wheels" ${target[@]+"${target[@]}"} \
      nibabel >>"$LOG_INSTALL" 2>&1 && "$PY" -c "import nibabel" 2>/dev/null; then
    note "nibabel: installed from benchmarks/wheels ($("$PY" -c 'import nibabel; print(nibabel.__version__)'))"
  else
    note "nibabel: NOT installed (no wheel in benchmarks/wheels?): the tests that read or write images fail"
  fi
fi
if [ "$IN_VENV" = 1 ] && "$PY" -m pip install --no-index --no-deps --no-build-isolation -e "$ROOT" \
    >>"$LOG_INSTALL" 2>&1; then
  note "jaxkin: pip install --no-deps --no-build-isolation -e $ROOT"
elif [ "$IN_VENV" = 1 ]; then
  note "jaxkin: pip install failed (see logs/install.log; --no-build-isolation needs setuptools>=77 and wheel): the checkout is on PYTHONPATH"
else
  note "jaxkin: not pip-installed (no virtual environment to install into): the checkout is on PYTHONPATH"
fi
# Tests and benchmarks import this checkout's jaxkin either way
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

DEVICES=$("$PY" -c "import jax, jaxkin; print(f'jax {jax.__version__}, jaxkin {jaxkin.__version__}, backend {jax.default_backend()}: {jax.devices()}')" 2>&1)
echo "$DEVICES"
GPU_NAME=$(command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)

# --- steps -------------------------------------------------------------------------------------------------------
# run NAME LIMIT_S PATTERN CMD...: runs CMD under a time limit, logs it, keeps the output lines matching PATTERN
run() {
  local name=$1 limit=$2 pattern=$3
  shift 3
  local log="$DEST/logs/$name.log" t0=$SECONDS rc
  echo "== $name (limit ${limit}s): $*"
  timeout "$limit" "$@" >"$log" 2>&1
  rc=$?
  local status="passed"
  if [ "$rc" = 124 ]; then status="TIMED OUT after ${limit} s"; FAILED=1
  elif [ "$rc" != 0 ]; then status="FAILED (exit $rc)"; FAILED=1; fi
  local lines
  lines=$(tr '\r' '\n' <"$log" | grep -E "$pattern" | tail -n 12)
  [ "$rc" != 0 ] && lines+=$'\n'"$(tr '\r' '\n' <"$log" | tail -n 8)"
  echo "$lines"
  echo "   -> $status, $((SECONDS - t0)) s"
  STEPS+=$'\n'"### $name: $status ($((SECONDS - t0)) s)"$'\n\n'"\`${*/#$PY/python}\`"$'\n\n```\n'"$lines"$'\n```\n'
}

NETWORK_TESTS=(tests/nn/test_convs.py tests/nn/test_unet.py tests/nn/test_loss.py tests/network/test_steps.py
               tests/network/test_predict.py)
FIT_TESTS=(tests/kinetics/test_models.py tests/kinetics/test_tabulated.py tests/fitting/test_lm.py
           tests/fitting/test_volume.py)
if [ "$QUICK" = 1 ]; then
  MODE="quick (CPU sizes)"
  run tests 900 "passed|failed|error" "$PY" -m pytest -q -x -p no:cacheprovider -m "not slow" "${NETWORK_TESTS[@]}" \
    "${FIT_TESTS[@]}"
  run train_step 900 "^(config|compile|train step|machine)" \
    "$PY" benchmarks/train_speed.py --steps 2 --batch 2 --size 32
  run predict 900 "^(volume|predicted|whole volume|EXTRAPOLATED|machine)" \
    "$PY" benchmarks/predict_speed.py --slices 16 --batch 8 --size 32
  run lm_fit 900 "^(jax |jaxkin|scipy|speed-up|SSE)" \
    "$PY" benchmarks/fit_speed.py --n 20 --big 16384 --chunk 4096 --delay-big 0
else
  MODE="full (GPU sizes)"
  run network_tests 90 "passed|failed|error|FAILED" "$PY" -m pytest -q -p no:cacheprovider -rf "${NETWORK_TESTS[@]}"
  run fit_tests 45 "passed|failed|error|FAILED" "$PY" -m pytest -q -p no:cacheprovider -rf -m "not slow" \
    "${FIT_TESTS[@]}"
  run train_step 45 "^(config|compile|train step|machine|peak)" \
    "$PY" benchmarks/train_speed.py --steps 10 --batch 5 --size 112
  run predict 50 "^(volume|predicted|whole volume|EXTRAPOLATED|machine|peak)" \
    "$PY" benchmarks/predict_speed.py --slices 400 --batch 32 --size 112
  run lm_fit 50 "^(jax |jaxkin|scipy|speed-up|SSE)" \
    "$PY" benchmarks/fit_speed.py --n 50 --big 2300000 --chunk 262144 --delay-big 0
fi

# --- report ------------------------------------------------------------------------------------------------------
{
  echo "# jaxkin GPU check"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC') · commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
       "· mode: $MODE · total $((SECONDS - START)) s · result: $([ "$FAILED" = 0 ] && echo 'all steps passed' || echo 'SOME STEPS FAILED')"
  echo
  echo "- devices: $DEVICES"
  [ -n "$GPU_NAME" ] && echo "- GPU: $GPU_NAME"
  echo "- host: $(uname -m), $(nproc 2>/dev/null || echo '?') CPUs, load $(cut -d' ' -f1 /proc/loadavg 2>/dev/null)"
  echo "- python: $("$PY" -c 'import sys; print(sys.version.split()[0])')"
  printf '%s' "$INSTALL_NOTES"
  echo
  echo "## Steps"
  echo "$STEPS"
  echo "Full output of each step: logs/."
} >"$REPORT"
echo "report: $REPORT ($((SECONDS - START)) s)"
exit "$FAILED"
