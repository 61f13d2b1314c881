#!/usr/bin/env bash
# Device check for a GPU machine: the engine, cohort, probe, compilation-cache and padded-cohort
# benchmarks at GPU sizes, in under 9 minutes. Results go to $OUT if set, else to
# benchmarks/results/gpu/: one JSON per benchmark and one log, device_check.log (at most 8
# files, as the device tool brings back).
#
#   bash benchmarks/device_check.sh               # on the GPU machine
#   bash benchmarks/device_check.sh --cpu-dry-run # tiny sizes on CPU, to check the script
#
# Every step has its own time limit, and a step is skipped when less than its limit is left
# of the overall budget (BUDGET_S, default 540 s), so the whole check ends in time; a failed or
# timed-out step is reported and the rest still run. PYTHON picks the interpreter (default
# python3). benchmarks/probe_speed.py writes benchmarks/results/probe_speed.json itself: the
# committed file is kept aside and put back, and the new one is moved to the results folder.
set -uo pipefail
cd "$(dirname "$0")/.."

DRY_RUN=0
if [[ "${1:-}" == "--cpu-dry-run" ]]; then
    DRY_RUN=1
elif [[ -n "${1:-}" ]]; then
    echo "usage: $0 [--cpu-dry-run]" >&2
    exit 2
fi
PYTHON="${PYTHON:-python3}"
BUDGET_S="${BUDGET_S:-540}"
export PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false   # several JAX processes in a row, one GPU
if [[ $DRY_RUN == 1 ]]; then
    export JAX_PLATFORMS=cpu
    RESULTS="${OUT:-$(mktemp -d /tmp/jaxode-device-check-XXXXXX)}"
else
    RESULTS="${OUT:-benchmarks/results/gpu}"
fi
mkdir -p "$RESULTS"
START=$SECONDS
FAILED=()
LOG="$RESULTS/device_check.log"
: >"$LOG"
exec > >(tee -a "$LOG") 2>&1

echo "== device check: results in $RESULTS (dry run: $DRY_RUN, budget ${BUDGET_S} s)"
if ! "$PYTHON" -c "import jaxode" 2>/dev/null; then
    echo "== jaxode not importable: pip install -e . (offline: no dependencies, no isolation)"
    if ! "$PYTHON" -m pip install --no-deps --no-build-isolation -e . 2>&1 | tail -n 5; then
        echo "   pip install failed; using PYTHONPATH=$PWD instead"
        export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    fi
fi
"$PYTHON" -c "import jaxode, diffrax, equinox, optax" || { echo "jaxode's dependencies are missing"; exit 1; }

echo "== nvidia-smi"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi 2>&1
else
    echo "nvidia-smi not found"
fi
echo "== jax.devices()"
DEVICES=$("$PYTHON" -c "
import jax, jaxlib, equinox, diffrax, optax, jaxode
print('jax', jax.__version__, 'jaxlib', jaxlib.__version__, 'equinox', equinox.__version__,
      'diffrax', diffrax.__version__, 'optax', optax.__version__, 'backend', jax.default_backend())
print(jax.devices(), [d.device_kind for d in jax.devices()])" 2>&1)
echo "$DEVICES"
if [[ $DRY_RUN == 0 ]] && ! grep -qi "cuda\|gpu" <<<"$DEVICES"; then
    echo "warning: JAX sees no GPU; the results below are CPU results"
fi

# step NAME LIMIT_S COMMAND...: run COMMAND (a program or a function of this script) with a
# time limit.
step() {
    local name=$1 limit=$2
    shift 2
    local left=$((BUDGET_S - (SECONDS - START)))
    if ((left < limit)); then
        echo "== $name: skipped (${left} s of the budget left, needs up to ${limit} s)"
        FAILED+=("$name (skipped)")
        return
    fi
    echo "== $name (limit ${limit} s): $*"
    if declare -F "$1" >/dev/null; then set -- bash -c '"$@"' _ "$@"; fi
    local begin=$SECONDS
    timeout --signal=INT --kill-after=10 "$limit" "$@"
    local rc=$?
    echo "== $name: exit $rc after $((SECONDS - begin)) s"
    if ((rc != 0)); then FAILED+=("$name (exit $rc)"); fi
}

probe_speed() {
    # probe_speed.py has no --out: keep the committed JSON aside, move the new one to $RESULTS.
    local committed=benchmarks/results/probe_speed.json keep
    keep=$(mktemp)
    cp "$committed" "$keep"
    "$PYTHON" benchmarks/probe_speed.py "$@"
    local rc=$?
    [[ -f $committed ]] && cp "$committed" "$RESULTS/probe_speed.json"
    cp "$keep" "$committed"
    rm -f "$keep"
    return $rc
}
export -f probe_speed
export PYTHON RESULTS

if [[ $DRY_RUN == 1 ]]; then
    ENGINE=(--steps 30 --chunk 10 --repeats 1 --pairs 5)
    SCALE=(--parts scale --scale-steps 30 --scale-chunk 10 --resnet-members 1 4 --node-members 1 2)
    FIXED=(--parts fixed --fixed-structures resnet --members 2 --steps 30 --chunk 10 --repeats 1)
    PROBE=(--directions 16 --radii 32 --numpy-directions 2)
    CACHE=(--rounds 2 --extra "--iterations 20 --eval-every-iterations 10 --width 8 --hidden 8")
    PADDING=(--steps 20 --every 10 --repeats 1)
    LIMITS=(240 240 240 240 240 240)
    BUDGET_S=100000
else
    ENGINE=(--steps 300 --chunk 100 --repeats 3 --pairs 20)
    SCALE=(--parts scale --scale-steps 150 --scale-chunk 50 --resnet-members 1 64 1024 --node-members 1 64 1024)
    FIXED=(--parts fixed --fixed-structures resnet --members 8 --steps 300 --chunk 100 --repeats 1)
    PROBE=()
    CACHE=(--rounds 2)
    PADDING=(--steps 300 --every 100 --repeats 1)
    # The compilation-cache check starts four CLI processes, each paying CUDA's start-up. The
    # padded-cohort row comes last: it runs when the others leave it a minute of the budget.
    LIMITS=(140 160 60 60 120 60)
fi

step engine_speed "${LIMITS[0]}" "$PYTHON" benchmarks/engine_speed.py "${ENGINE[@]}" \
    --out "$RESULTS/engine_speed.json"
step cohort_scale "${LIMITS[1]}" "$PYTHON" benchmarks/cohort_speed.py "${SCALE[@]}" \
    --out "$RESULTS/cohort_scale.json"
step probe_speed "${LIMITS[2]}" probe_speed "${PROBE[@]}"
step cohort_fixed "${LIMITS[3]}" "$PYTHON" benchmarks/cohort_speed.py "${FIXED[@]}" \
    --out "$RESULTS/cohort_fixed.json"
step compile_cache "${LIMITS[4]}" "$PYTHON" benchmarks/compile_cache.py "${CACHE[@]}" \
    --out "$RESULTS/compile_cache.json"
step padding_cost "${LIMITS[5]}" "$PYTHON" benchmarks/padding_cost.py "${PADDING[@]}" \
    --out "$RESULTS/padding_cost.json"

echo "== done in $((SECONDS - START)) s; results in $RESULTS:"
ls -l "$RESULTS"
if ((${#FAILED[@]})); then
    echo "== not completed: ${FAILED[*]}"
    exit 1
fi
