"""I/O faults end cleanly (issue 16): disk full, read-only or vanished run directory, damaged log.

Each fault ends the job with one line ``distnqs: error: I/O error: cannot write WHAT in DIR: ERRNO TEXT;
a rerun resumes from checkpoint-...`` and exit status 74; older checkpoints stay intact; the same command
resumes after the fault is cleared, bit-identically to an uninterrupted run. A full disk is a real small
tmpfs where the machine allows mounting (root), else the ``DISTNQS_FAULT_IO`` hook.
"""

import errno
import os
import subprocess
import uuid

import h5py
import numpy as np
import pytest

from conftest import assert_same_final_checkpoints, requires_mpi, run_cli
from distnqs.errors import RunIOError
from distnqs.io import checkpoint
from distnqs.io.files import atomic_write_json, io_errno
from distnqs.io.log import StepLog, read_log

# 4x4 TFIM, complex RBM alpha 8 with Adam: one checkpoint is ~125 kB, the log ~125 kB, so a
# 300 kB tmpfs holds one checkpoint and the log (the preflight passes) but not a second checkpoint.
CONFIG = """
seed = 3
n_steps = 12
[lattice]
kind = "square"
Lx = 4
Ly = 4
pbc = true
[hamiltonian]
model = "tfim"
G = 3.0
[ansatz]
model = "rbm"
alpha = 8
param_dtype = "complex128"
[sampler]
kind = "metropolis_local"
n_samples = 64
n_chains = 8
n_discard = 1
[optimizer]
kind = "adam"
learning_rate = 0.01
[run]
checkpoint_every = 4
keep_checkpoints = 2
print_every = 1000
reference = false
eval_steps = 0
"""
EXIT_IO_ERROR = 74
EXIT_SIGNALLED = 75


def _mount_tmpfs(path, size):
    """Mount a tmpfs of ``size`` at ``path``; False where the machine does not allow it."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def _remount(path, options):
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True, capture_output=True, timeout=30)


@pytest.fixture
def tmpfs(tmp_path):
    """A 400 kB tmpfs (unmounted afterwards), or None where mounting is not allowed: room for the log and
    one checkpoint of the 4x4 test run (about 310 kB, checked up front) but not for a second one."""
    mnt = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
    mounted = _mount_tmpfs(mnt, "400k")
    yield mnt if mounted else None
    if mounted:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30)


@pytest.fixture(scope="session")  # see conftest: built once per worker, never rebuilt
def config(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "tfim4x4.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="session")  # see conftest: built once per worker, never rebuilt
def uninterrupted(tmp_path_factory, config):
    out = tmp_path_factory.mktemp("ref") / "ref"
    run_cli(["run", str(config), "--outdir", str(out)], check=True)
    return out


def _one_error_line(proc, what, reason, resume_from):
    """The job's stderr ends in exactly one error line naming what, why, and where a rerun resumes; no traceback."""
    errors = [line for line in proc.stderr.splitlines() if line.startswith("distnqs: error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    line = errors[0]
    assert f"cannot write {what}" in line and reason in line, line
    assert (f"a rerun resumes from {resume_from}" if resume_from else "a rerun starts at step 0") in line, line
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr[-3000:]
    return line


def _no_temporary_files(outdir):
    assert not [p.name for p in outdir.iterdir() if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------- in-process, fast


def test_h5py_flush_errors_carry_their_errno():
    exc = RuntimeError("Unable to synchronously flush file (file write failed: time = x, filename = 'a', errno = 28, error message = 'No space left on device')")
    assert io_errno(exc) == errno.ENOSPC
    assert io_errno(RuntimeError("Can't destroy cache (slist already enabled?)")) is None
    assert io_errno(OSError(errno.EROFS, "Read-only file system")) == errno.EROFS


def test_summary_into_a_vanished_run_directory_is_one_run_io_error(tmp_path):
    gone = tmp_path / "gone"
    with pytest.raises(RunIOError) as info:
        atomic_write_json(gone / "summary.json", {"step": 1})
    assert "cannot write summary.json" in str(info.value) and "[ENOENT]" in str(info.value)
    assert "a rerun starts at step 0" in str(info.value)
    import pickle

    again = pickle.loads(pickle.dumps(info.value))  # what comm.on_root sends to the other ranks
    assert str(again) == str(info.value) and again.resume_from is None


def test_preflight_refuses_a_directory_without_room(tmp_path, monkeypatch):
    from distnqs.io import preflight

    class Fake:
        f_bavail, f_frsize = 10, 4096  # 40 kB free

    monkeypatch.setattr(preflight.os, "statvfs", lambda path: Fake)
    params = {"w": np.zeros(10_000, np.complex128)}  # 160 kB
    with pytest.raises(RunIOError) as info:
        preflight.check_run_directory(tmp_path, params, {}, {"x": np.zeros(8)}, 2, 100, 2)
    assert "40 kB free" in str(info.value) and "one checkpoint" in str(info.value)
    Fake.f_bavail = 10**6
    assert preflight.check_run_directory(tmp_path, params, {}, {"x": np.zeros(8)}, 2, 100, 2)["free"] == 4096 * 10**6
    assert list(tmp_path.iterdir()) == []  # the write test file is gone


def test_full_disk_while_writing_a_checkpoint_or_the_log_in_process(tmp_path, tmpfs):
    if tmpfs is None:  # no mount here: the hook raises ENOSPC in the writer instead
        tmpfs = tmp_path
        os.environ["DISTNQS_FAULT_IO"] = "checkpoint:2:ENOSPC"
    try:
        leaves = [np.arange(1000, dtype=np.float64)]
        checkpoint.write(tmpfs, 1, leaves, [], [leaves], {})
        before = checkpoint.path_for(tmpfs, 1).read_bytes()
        big = [np.zeros(60_000)]  # 480 kB: does not fit in the 400 kB tmpfs
        with pytest.raises(RunIOError) as info:
            checkpoint.write(tmpfs, 2, big, [], [leaves], {})
        assert "checkpoint-000000002.h5" in str(info.value) and "No space left on device [ENOSPC]" in str(info.value)
        assert "a rerun resumes from checkpoint-000000001.h5" in str(info.value)
        _no_temporary_files(tmpfs)
        assert checkpoint.path_for(tmpfs, 1).read_bytes() == before
        assert [s for s, _ in checkpoint.list_checkpoints(tmpfs)] == [1]
    finally:
        os.environ.pop("DISTNQS_FAULT_IO", None)


def test_damaged_log_is_moved_aside_and_rebuilt_with_a_warning(tmp_path):
    path = tmp_path / "log.h5"
    log = StepLog(path)
    for step in range(5):
        log.append({"step": step, "energy_mean": -float(step)})
    log.close()
    path.write_bytes(path.read_bytes()[:300])  # truncated
    with pytest.warns(UserWarning, match="unreadable"):
        log = StepLog(path, resume_step=3)
    log.append({"step": 3, "energy_mean": -3.0})
    log.close()
    rebuilt = read_log(path)
    assert np.array_equal(rebuilt["step"], np.arange(4))
    assert np.isnan(rebuilt["energy_mean"][:3]).all() and rebuilt["energy_mean"][3] == -3.0
    assert len(list(tmp_path.glob("log.h5.damaged-*"))) == 1


# --------------------------------------------------------------------------- the command line


@pytest.mark.xdist_group("io_faults_runs")  # shares a session-scoped fixture: computed once, on one worker
def test_disk_full_at_a_checkpoint_ends_with_one_line_and_resumes(tmp_path, tmpfs, config, uninterrupted):
    env = None
    if tmpfs is None:  # fall back to the hook, never skip
        out, env = tmp_path / "run", {"DISTNQS_FAULT_IO": "checkpoint:8:ENOSPC"}
    else:
        out = tmpfs / "run"
    proc = run_cli(["run", str(config), "--outdir", str(out)], env_extra=env)
    assert proc.returncode == EXIT_IO_ERROR, proc.stderr[-3000:]
    line = _one_error_line(proc, "checkpoint-000000008.h5", "No space left on device [ENOSPC]", "checkpoint-000000004.h5")
    print(line)
    _no_temporary_files(out)
    assert [s for s, _ in checkpoint.list_checkpoints(out)] == [4]
    assert checkpoint.read(checkpoint.path_for(out, 4))["step"] == 4  # verifies its checksum
    if tmpfs is not None:
        _remount(tmpfs, "size=4m")  # space freed
    resumed = run_cli(["run", str(config), "--outdir", str(out)], check=True)
    assert "resuming from checkpoint-000000004.h5" in resumed.stdout
    assert_same_final_checkpoints(out, uninterrupted)


@pytest.mark.xdist_group("io_faults_runs")  # shares a session-scoped fixture: computed once, on one worker
def test_read_only_log_then_damaged_log_then_read_only_directory(tmp_path, tmpfs, config, uninterrupted):
    """EROFS while writing log.h5 (hook), then the log truncated, then (with a mount) a really read-only directory."""
    base = tmpfs if tmpfs is not None else tmp_path
    if tmpfs is not None:
        _remount(tmpfs, "size=4m")
    out = base / "run"
    proc = run_cli(["run", str(config), "--outdir", str(out), "--debug"], env_extra={"DISTNQS_FAULT_IO": "log:6:EROFS"})
    assert proc.returncode == EXIT_IO_ERROR, proc.stderr[-3000:]
    assert "Traceback" in proc.stderr  # --debug
    assert "cannot write log.h5" in proc.stderr and "Read-only file system [EROFS]" in proc.stderr
    assert "a rerun resumes from checkpoint-000000004.h5" in proc.stderr
    assert read_log(out / "log.h5")["step"].size == 6  # left readable
    (out / "log.h5").write_bytes((out / "log.h5").read_bytes()[:500])  # and now damaged
    if tmpfs is not None:
        _remount(tmpfs, "ro")
        refused = run_cli(["run", str(config), "--outdir", str(out)])
        assert refused.returncode == EXIT_IO_ERROR, refused.stderr[-3000:]
        _one_error_line(refused, "config.toml", "Read-only file system [EROFS]", "checkpoint-000000004.h5")
        _remount(tmpfs, "rw")
    resumed = run_cli(["run", str(config), "--outdir", str(out)], check=True)
    assert "unreadable" in resumed.stderr and "Traceback" not in resumed.stderr
    assert len(list(out.glob("log.h5.damaged-*"))) == 1
    log, ref_log = read_log(out / "log.h5"), read_log(uninterrupted / "log.h5")
    assert np.array_equal(log["step"], np.arange(12))
    assert np.array_equal(log["energy_mean"][4:], ref_log["energy_mean"][4:])
    assert_same_final_checkpoints(out, uninterrupted)


@pytest.mark.xdist_group("io_faults_runs")  # shares a session-scoped fixture: computed once, on one worker
@requires_mpi
def test_two_ranks_disk_full_every_rank_exits_74_with_one_line(tmp_path, config):
    out = tmp_path / "run"
    proc = run_cli(["run", str(config), "--outdir", str(out)], np_=2, timeout=300, env_extra={"DISTNQS_FAULT_IO": "checkpoint:8:ENOSPC"})
    assert proc.returncode == EXIT_IO_ERROR, (proc.returncode, proc.stderr[-3000:])
    _one_error_line(proc, "checkpoint-000000008.h5", "No space left on device [ENOSPC]", "checkpoint-000000004.h5")
    _no_temporary_files(out)
    resumed = run_cli(["run", str(config), "--outdir", str(out)], np_=2, timeout=300, check=True)
    assert "resuming from checkpoint-000000004.h5" in resumed.stdout
    assert checkpoint.read(checkpoint.list_checkpoints(out)[-1][1])["step"] == 12


def test_a_reader_holding_the_log_makes_the_writer_wait_not_fail(tmp_path):
    """Another process holds log.h5 open with HDF5's default file lock (a user's ``h5py.File(path)``)
    just as the run opens it for writing: a plain open fails with EAGAIN (the run used to end there
    with an I/O error), the run's open waits for the lock; ``read_log`` itself takes no lock."""
    import sys
    import time

    from distnqs.io.log import _open_for_append

    path = tmp_path / "log.h5"
    log = StepLog(path)
    log.append({"step": 0, "energy_mean": -1.0})
    log.close()
    reader = subprocess.Popen(
        [sys.executable, "-c", "import h5py, sys, time; f = h5py.File(sys.argv[1], 'r'); print('open', flush=True); time.sleep(2)", str(path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "open"
        assert read_log(path)["step"].tolist() == [0.0]  # no lock taken, no conflict
        with pytest.raises(OSError) as plain:
            h5py.File(path, "a", libver="latest")
        assert io_errno(plain.value) == errno.EAGAIN
        t0 = time.monotonic()
        f = _open_for_append(path)
        assert time.monotonic() - t0 > 1.0  # it waited for the reader (2 s) to let go
        f.close()
    finally:
        reader.kill()
        reader.wait()
