"""Slurm on a real scheduler: a single-node slurmctld/slurmd on localhost (slurm/local-cluster.sh).

The project's own batch script (slurm/cpu.sbatch, the file a user submits) is preempted with
``scontrol requeue`` and then signalled with SIGUSR1 before its (shortened) time limit; each time
the job must checkpoint, requeue, resume, and finally end bit-identical to an uninterrupted run.
A 2-task ``srun --mpi=pmi2`` must be one 2-rank MPI world; a 2-task ``srun --mpi=none`` must be
refused. The cluster is started by the script for this session and stopped at the end; if its
daemons cannot start, these tests fail with the script's reason (they do not skip).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from conftest import BIN, REPO, clean_env, run_cli
from distnqs.io import checkpoint
from distnqs.io.log import read_log
from test_resume import EXIT_SIGNALLED, _assert_identical, _cfg

CLUSTER = REPO / "slurm" / "local-cluster.sh"
N_STEPS = 40
STEP_SECONDS = "1.0"  # DISTNQS_FAULT_STEP_SECONDS in the job: the job outlives Slurm's 30 s time-limit check
SLURMCTLD_PERIOD = 30  # slurmctld checks time limits (and sends --signal) every 30 s


@pytest.fixture(scope="session")
def slurm_env(tmp_path_factory):
    env = clean_env()
    env["DISTNQS_SLURM_DIR"] = str(tmp_path_factory.mktemp("slurm-cluster"))
    # own ports per pytest-xdist worker: when the Slurm tests are spread over workers (each worker has
    # its own session, so its own cluster), two clusters must not fight over one port
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    offset = 10 * int(worker[2:]) if worker[2:].isdigit() else 0
    env.setdefault("DISTNQS_SLURM_CTLD_PORT", str(16817 + offset))
    env.setdefault("DISTNQS_SLURM_SLURMD_PORT", str(16818 + offset))
    env["PATH"] = f"{env['PATH']}:/usr/sbin"
    up = subprocess.run([str(CLUSTER), "up"], env=env, capture_output=True, text=True, timeout=600)
    if up.returncode != 0:
        pytest.fail(f"slurm/local-cluster.sh up failed ({up.returncode}):\n{up.stdout}\n{up.stderr}", pytrace=False)
    env["SLURM_CONF"] = f"{env['DISTNQS_SLURM_DIR']}/slurm.conf"
    yield env
    subprocess.run([str(CLUSTER), "down"], env=env, capture_output=True, text=True, timeout=120)


def _slurm(env, *args, timeout=60, check=True):
    proc = subprocess.run(list(args), env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def _job(env, job_id) -> dict:
    """``scontrol show job`` as a dict (JobState, Restarts, ExitCode, ...)."""
    text = _slurm(env, "scontrol", "show", "job", "-o", job_id).stdout
    return dict(m.groups() for m in re.finditer(r"(\w+)=(\S*)", text))


def _wait(what, predicate, timeout, poll=0.2, info=lambda: ""):
    t0 = time.time()
    while time.time() - t0 < timeout:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{info()}")


def _rows(outdir) -> int:
    try:
        return int(read_log(outdir / "log.h5")["step"].size)
    except Exception:  # noqa: BLE001 - not there yet, or being written
        return 0


@pytest.mark.xdist_group("slurm")
def test_requeue_and_usr1_before_the_time_limit_resume_bit_identically(tmp_path, slurm_env):
    cfg = _cfg(tmp_path, kind="sgd", sr="true", **{"n_steps = 24": f"n_steps = {N_STEPS}"})
    out, log_file = tmp_path / "run", tmp_path / "job.out"
    env = dict(slurm_env, DISTNQS_CONFIG=str(cfg), DISTNQS_OUTDIR=str(out), DISTNQS_VENV=str(BIN.parent),
               DISTNQS_FAULT_STEP_SECONDS=STEP_SECONDS)
    # the header's resources, a long limit, and the warning 5 minutes before it (the header's)
    submitted = _slurm(env, "sbatch", "--parsable", f"--output={log_file}", "--time=30", "slurm/cpu.sbatch")
    job_id = submitted.stdout.strip().split(";")[0]

    def info():
        return f"job: {_job(env, job_id)}\n--- job output ---\n{log_file.read_text() if log_file.exists() else ''}"

    def started(n):
        job = _job(env, job_id)
        assert job["JobState"] not in ("FAILED", "CANCELLED", "COMPLETED", "TIMEOUT", "NODE_FAIL"), info()
        return int(job["Restarts"]) == n and job["JobState"] == "RUNNING"

    def rows_at_least(n):
        return _rows(out) >= n

    def stopped_and_requeued(n):
        job = _job(env, job_id)
        return int(job["Restarts"]) >= n and job["JobState"] in ("PENDING", "REQUEUED", "RUNNING")

    try:
        # 1. preemption: scontrol requeue of the running job -> SIGTERM -> checkpoint, exit 75 -> back in the queue
        _wait("the first start", lambda: started(0), 300, info=info)
        _wait("3 log rows", lambda: rows_at_least(3), 300, info=info)
        _slurm(env, "scontrol", "requeue", job_id)
        _wait("the requeue", lambda: stopped_and_requeued(1), 120, info=info)
        first_stop = checkpoint.list_checkpoints(out)[-1][0]
        assert 3 <= first_stop < N_STEPS, info()
        _wait("the second start", lambda: started(1), 300, info=info)
        _wait("the resumed run's rows", lambda: rows_at_least(first_stop + 2), 300, info=info)
        assert f"resuming from checkpoint-{first_stop:09d}.h5" in log_file.read_text(), info()

        # 2. the time limit comes closer than --signal's 5 minutes: USR1 to the ranks, checkpoint, exit 75,
        #    and the batch script requeues the job itself
        _slurm(env, "scontrol", "update", f"JobId={job_id}", "TimeLimit=5")
        _wait("the USR1 stop and requeue", lambda: stopped_and_requeued(2), SLURMCTLD_PERIOD + 120, info=info)
        _slurm(env, "scontrol", "update", f"JobId={job_id}", "TimeLimit=30")  # else the next start is signalled too
        text = log_file.read_text()
        assert "(SIGUSR1)" in text and "requeueing job" in text, info()
        second_stop = checkpoint.list_checkpoints(out)[-1][0]
        assert first_stop < second_stop < N_STEPS, info()

        # 3. the third start runs to the end
        _wait("the job's end", lambda: _job(env, job_id)["JobState"] == "COMPLETED", 600, poll=0.5, info=info)
    finally:
        _slurm(env, "scancel", job_id, check=False)
    job = _job(env, job_id)
    assert job["ExitCode"] == "0:0" and int(job["Restarts"]) == 2, info()
    assert f"resuming from checkpoint-{second_stop:09d}.h5" in log_file.read_text(), info()
    ckpt = checkpoint.read(checkpoint.list_checkpoints(out)[-1][1])
    assert ckpt["attrs"]["n_ranks"] == 2  # srun --mpi=pmi2 gave one 2-rank world

    reference = tmp_path / "uninterrupted"
    run_cli(["run", str(cfg), "--outdir", str(reference)], np_=2, check=True)
    _assert_identical(out, reference)


@pytest.mark.xdist_group("slurm")
def test_srun_pmi2_gives_one_two_rank_mpi_world(slurm_env):
    code = ("from mpi4py import MPI; c = MPI.COMM_WORLD; "
            "print('rank', c.Get_rank(), 'size', c.Get_size(), 'sum', c.allreduce(c.Get_rank() + 1))")
    proc = _slurm(slurm_env, "srun", "--mpi=pmi2", "--ntasks=2", sys.executable, "-c", code, timeout=300)
    lines = sorted(line for line in proc.stdout.splitlines() if line.startswith("rank"))
    assert lines == ["rank 0 size 2 sum 3", "rank 1 size 2 sum 3"], proc.stdout + proc.stderr


@pytest.mark.xdist_group("slurm")
def test_srun_without_an_mpi_plugin_is_refused(tmp_path, slurm_env):
    cfg = _cfg(tmp_path)
    out = tmp_path / "run"
    proc = _slurm(slurm_env, "srun", "--mpi=none", "--ntasks=2", sys.executable, "-m", "distnqs", "run", str(cfg),
                  "--outdir", str(out), timeout=300, check=False)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("distnqs: error:")]
    assert errors and all("2 tasks" in line and "1 rank" in line for line in errors), proc.stderr
    assert not checkpoint.list_checkpoints(out) if out.exists() else True
    assert not (out / "log.h5").exists()


@pytest.mark.xdist_group("slurm")
def test_a_gpu_job_on_a_cpu_node_stops_at_the_doctor(tmp_path, slurm_env):
    """The GPU scripts' check (DISTNQS_REQUIRE_GPU=1): on this CPU-only node the job ends with status 2
    at `distnqs doctor --require-gpu`, is not requeued, and never starts the run."""
    cfg = _cfg(tmp_path)
    out, log_file = tmp_path / "run", tmp_path / "job.out"
    env = dict(slurm_env, DISTNQS_CONFIG=str(cfg), DISTNQS_OUTDIR=str(out), DISTNQS_VENV=str(BIN.parent),
               DISTNQS_REQUIRE_GPU="1")
    job_id = _slurm(env, "sbatch", "--parsable", f"--output={log_file}", "slurm/cpu.sbatch").stdout.strip().split(";")[0]
    try:
        _wait("the job's end", lambda: _job(env, job_id)["JobState"] in ("FAILED", "COMPLETED"), 300, poll=0.5,
              info=lambda: log_file.read_text() if log_file.exists() else "")
    finally:
        _slurm(env, "scancel", job_id, check=False)
    job, text = _job(env, job_id), log_file.read_text()
    assert job["JobState"] == "FAILED" and job["ExitCode"] == "2:0" and int(job["Restarts"]) == 0, (job, text)
    assert "--require-gpu" in text and "cpu backend" in text and "not starting the run" in text, text
    assert not out.exists()
