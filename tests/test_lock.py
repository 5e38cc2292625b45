"""Run-directory lock: a live holder refuses a second job, a dead one's lock is taken over."""

import json
import os
import socket
import subprocess

import pytest

from conftest import run_cli
from distnqs.io import lock


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _write_lock(outdir, **holder):
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / lock.LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "since": "x", **holder}))


def test_acquire_release(tmp_path):
    held = lock.acquire(tmp_path)
    assert held["pid"] == os.getpid()
    assert lock.read(tmp_path)["pid"] == os.getpid()
    lock.acquire(tmp_path)  # the same process may take its own lock again (a run() that raised)
    lock.release(tmp_path)
    assert lock.read(tmp_path) is None


def test_live_holder_refused(tmp_path):
    _write_lock(tmp_path, pid=os.getppid(), job_id="4242")  # alive, not us
    with pytest.raises(lock.RunLockedError, match="job 4242"):
        lock.acquire(tmp_path)
    with pytest.raises(lock.RunLockedError):
        lock.check_free(tmp_path)
    assert lock.read(tmp_path)["pid"] == os.getppid()  # untouched


def test_other_host_refused(tmp_path):
    _write_lock(tmp_path, pid=_dead_pid(), host="some-other-node")  # cannot check a pid there
    with pytest.raises(lock.RunLockedError, match="some-other-node"):
        lock.acquire(tmp_path)


def test_stale_lock_taken_over_with_warning(tmp_path):
    pid = _dead_pid()
    _write_lock(tmp_path, pid=pid)
    with pytest.warns(UserWarning, match=f"stale lock.*pid {pid}"):
        lock.acquire(tmp_path)
    assert lock.read(tmp_path)["pid"] == os.getpid()
    lock.release(tmp_path)


def test_requeued_job_takes_over_its_own_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "777")
    _write_lock(tmp_path, pid=os.getppid(), host="node-before-requeue", job_id="777")
    with pytest.warns(UserWarning, match="stale lock"):
        lock.acquire(tmp_path)
    lock.release(tmp_path)


CFG = """
seed = 0
n_steps = 2
[lattice]
kind = "chain"
Lx = 6
pbc = true
[hamiltonian]
model = "tfim"
G = 1.0
[sampler]
n_samples = 64
n_chains = 8
n_discard = 2
[run]
checkpoint_every = 0
reference = false
"""


def test_cli_locked_dir_refused_and_stale_taken_over(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(CFG)
    out = tmp_path / "out"
    _write_lock(out, pid=os.getpid(), job_id="123")  # this pytest process: alive, not the CLI's pid
    proc = run_cli(["run", str(cfg), "--outdir", str(out), "--quiet"])
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("distnqs: error: ") and "being written by another job" in lines[0], proc.stderr
    assert not (out / "config.toml").exists()

    _write_lock(out, pid=_dead_pid())
    proc = run_cli(["run", str(cfg), "--outdir", str(out), "--quiet"])
    assert proc.returncode == 0, proc.stderr
    # one plain line, not Python's "file:line: UserWarning" plus the source line of the call
    warned = [ln for ln in proc.stderr.splitlines() if "stale lock" in ln]
    assert len(warned) == 1 and warned[0].startswith("distnqs: warning: taking over the stale lock"), proc.stderr
    assert "UserWarning" not in proc.stderr and "outcome = " not in proc.stderr, proc.stderr
    assert lock.read(out) is None  # released at the end
    assert (out / "summary.json").exists()


def test_check_free_removes_stale_lock(tmp_path):
    _write_lock(tmp_path, pid=_dead_pid())
    with pytest.warns(UserWarning, match="stale lock"):
        lock.check_free(tmp_path)
    assert lock.read(tmp_path) is None
