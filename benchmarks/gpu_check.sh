#!/usr/bin/env bash
# GPU check, at most ~8 minutes on one GPU (time limits add up to 485 s + start-up) (a GPU install: make install GPU=cuda12 VENV=.venv-gpu):
#   VENV=.venv-gpu bash benchmarks/gpu_check.sh           # on the GPU machine
#   bash benchmarks/gpu_check.sh --smoke                  # tiny sizes, CPU allowed: checks that every part runs
# 1. distnqs doctor --require-gpu (1 rank) and 2 ranks sharing the GPU (--share-gpu)
# 2. NAQS 12x12 at the paper's size (configs/naqs/tfim12_G3.0.toml: 20 layers, 64 channels, 1024 samples),
#    s/step with float32 and float64 layers, 1 rank
# 3. RBM 10x10 SR s/step, distnqs and NetKet on the same GPU (bench_vs_netket.py --case rbm_sr)
# 4. NAQS against NetKet's FastARNNConv2D on the same GPU (bench_naqs.py --what step)
# 5. 2 ranks sharing the GPU (XLA_PYTHON_CLIENT_MEM_FRACTION=0.4 each) through the mpi4jax path: NAQS 12x12 float32
# Results: benchmarks/results/gpu_*.json (and $OUT/ when set); a log in benchmarks/results/gpu_check.log.
set -u
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
BIN=$PWD/$VENV/bin
export PATH="$BIN:$PATH" PYTHONUNBUFFERED=1
R=benchmarks/results
SMOKE=""; REQ="--require-gpu"; STEPS=5; RBM_STEPS=20; SLOW=1  # time limits x SLOW (CPU smoke runs: x4)
B=benchmarks/results  # where bench_vs_netket.py / bench_naqs.py write
if [ "${1:-}" = "--smoke" ]; then SMOKE="--smoke"; REQ=""; STEPS=1; RBM_STEPS=1; SLOW=4; R=$(mktemp -d); echo "smoke: results in $R"; fi
LOG=$R/gpu_check.log
: > "$LOG"
status=0
step() {  # step NAME TIMEOUT CMD...: run one part, keep going on failure
  local name=$1 limit=$(( $2 * SLOW )); shift 2
  echo "== $name ($(date +%T)): $*" | tee -a "$LOG"
  local t0=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee -a "$LOG" | tail -n 12
  local rc=${PIPESTATUS[0]}
  echo "== $name: rc=$rc in $((SECONDS - t0)) s" | tee -a "$LOG"
  [ "$rc" = 0 ] || status=1
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$LOG" || true

step doctor 45 "$BIN/distnqs" doctor $REQ --json
grep '^{' "$LOG" | "$BIN/python" -c "import sys, json; json.dump([json.loads(l) for l in sys.stdin if l.startswith('{')], open('$R/gpu_doctor.json', 'w'), indent=2)"
step doctor_2ranks_shared 60 env CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0} XLA_PYTHON_CLIENT_MEM_FRACTION=0.4 \
  mpirun -np 2 "$BIN/distnqs" doctor $REQ --share-gpu

for dt in float32 float64; do
  step "naqs12_$dt" 90 "$BIN/python" benchmarks/gpu_check.py configs/naqs/tfim12_G3.0.toml --dtype $dt --steps $STEPS $SMOKE \
    --out $R/gpu_naqs12_$dt.json
done

# bench_vs_netket.py / bench_naqs.py write fixed names under results/: keep the CPU figures, rename the GPU ones
backup=$(mktemp -d)
cp $B/rbm_sr.json $B/naqs_step.json "$backup"/ 2>/dev/null
if [ -n "$SMOKE" ]; then
  step rbm_vs_netket 60 "$BIN/python" benchmarks/bench_vs_netket.py --case rbm_sr --steps 1 --repeats 1 --n-samples 64 --n-chains 4 --n-discard 1
  step naqs_vs_netket 60 "$BIN/python" benchmarks/bench_naqs.py --what step --steps 1 --repeats 1 --n-samples 16 --depth 2 --features 4
else
  step rbm_vs_netket 60 "$BIN/python" benchmarks/bench_vs_netket.py --case rbm_sr --steps $RBM_STEPS --repeats 1
  step naqs_vs_netket 60 "$BIN/python" benchmarks/bench_naqs.py --what step --steps $STEPS --repeats 1
fi
[ -f $B/rbm_sr.json ] && mv $B/rbm_sr.json $R/gpu_rbm_vs_netket.json
[ -f $B/naqs_step.json ] && mv $B/naqs_step.json $R/gpu_naqs_vs_netket.json
cp "$backup"/*.json $B/ 2>/dev/null; rm -rf "$backup"

step naqs12_float32_2ranks_shared 80 env CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0} XLA_PYTHON_CLIENT_MEM_FRACTION=0.4 \
  mpirun -np 2 "$BIN/python" benchmarks/gpu_check.py configs/naqs/tfim12_G3.0.toml --dtype float32 --steps $STEPS $SMOKE \
  --out $R/gpu_naqs12_float32_2ranks.json

if [ -n "${OUT:-}" ]; then cp $R/gpu_*.json "$LOG" "$OUT"/ 2>/dev/null; fi
echo "gpu_check: $( [ $status = 0 ] && echo all parts ran || echo SOME PARTS FAILED, see $LOG )"
exit $status
