# The body of every distnqs batch script (slurm/*.sbatch sources it; do not submit this file).
#
# Expects the job to start in the repository root (sbatch's default: the directory you submit
# from) and these variables, each with a default set by the .sbatch file:
#   DISTNQS_CONFIG       the run's TOML config
#   DISTNQS_OUTDIR       the run directory; every (re)start resumes from its newest checkpoint
#   DISTNQS_REQUIRE_GPU  1 for a GPU job: `distnqs doctor --require-gpu` on every task first; a CPU
#                        backend, a shared GPU or an MPI/launcher mismatch ends the job (status 2)
#   DISTNQS_MPI          srun's MPI plugin (default pmi2; the mpich wheel speaks PMI over PMI_FD)
#   DISTNQS_VENV         the virtual environment distnqs is installed in (default .venv)
#
# Exit status (the job's): 0 finished; 75 stopped by a signal after a checkpoint (the job has been
# requeued and will resume); 2 bad input or a failed environment check; anything else a crash.
set -uo pipefail

DISTNQS_MPI=${DISTNQS_MPI:-pmi2}
DISTNQS_VENV=${DISTNQS_VENV:-.venv}
DISTNQS_REQUIRE_GPU=${DISTNQS_REQUIRE_GPU:-0}

fail() { echo "distnqs job: error: $*" >&2; exit 2; }

[ -f "$DISTNQS_CONFIG" ] || fail "config '$DISTNQS_CONFIG' not found in $(pwd) (submit from the repository root, or set DISTNQS_CONFIG)"
[ -f "$DISTNQS_VENV/bin/activate" ] || fail "no virtual environment at '$DISTNQS_VENV' (run make install, or set DISTNQS_VENV)"
# shellcheck disable=SC1091
source "$DISTNQS_VENV/bin/activate"
export PYTHONUNBUFFERED=1
# glibc malloc on transparent huge pages (no effect where the node has THP off): XLA's CPU runtime
# allocates its large step buffers afresh every step, which otherwise costs a third of a CPU run's
# time in page faults (the Makefile's HUGEPAGES). Appended to any tunables the user set.
export GLIBC_TUNABLES=${GLIBC_TUNABLES:+$GLIBC_TUNABLES:}glibc.malloc.hugetlb=1

echo "distnqs job ${SLURM_JOB_ID:-?} (start $((${SLURM_RESTART_COUNT:-0} + 1))) on ${SLURM_JOB_NODELIST:-?}," \
     "${SLURM_NTASKS:-1} task(s): $DISTNQS_CONFIG -> $DISTNQS_OUTDIR"

# A GPU job checks, on the same tasks as the run, that every rank has its own GPU and one MPI world
# (one line per rank in the job log) before any work; a failure is not requeued.
if [ "$DISTNQS_REQUIRE_GPU" = 1 ]; then
    srun --mpi="$DISTNQS_MPI" --kill-on-bad-exit=1 distnqs doctor --require-gpu \
        || fail "distnqs doctor --require-gpu failed (see above): not starting the run"
fi

# srun in the background so that this shell survives Slurm's SIGTERM (preemption, scontrol
# requeue) and waits for the ranks' checkpoint. Slurm sends that SIGTERM to the ranks itself; it is
# not passed on (srun answers a SIGTERM by killing the step). Slurm's --signal=USR1@T (without B:)
# also goes to the ranks directly; a USR1 sent to this shell (--signal=B:USR1@T, scancel --batch)
# is passed on to srun, which forwards it to every rank.
srun --mpi="$DISTNQS_MPI" --kill-on-bad-exit=1 distnqs run "$DISTNQS_CONFIG" --outdir "$DISTNQS_OUTDIR" &
srun_pid=$!
trap ':' TERM INT
trap 'kill -s USR1 "$srun_pid" 2>/dev/null' USR1
while :; do
    wait "$srun_pid"
    status=$?
    kill -0 "$srun_pid" 2>/dev/null || break  # a trapped signal interrupted wait; srun still runs
done

# 75: stopped by a signal after a checkpoint -> requeue; the next start resumes from it.
# 0: finished. Anything else: a real failure; do not loop.
if [ "$status" -eq 75 ]; then
    echo "distnqs job: stopped cleanly after a checkpoint; requeueing job $SLURM_JOB_ID"
    scontrol requeue "$SLURM_JOB_ID" || echo "distnqs job: scontrol requeue failed (already requeued?)" >&2
fi
exit "$status"
