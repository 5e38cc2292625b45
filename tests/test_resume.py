"""Long-run safety: a stopped, killed or preempted run resumes bit-identically."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, clean_env, mpirun_cmd, requires_mpi, run_cli
from distnqs.io import checkpoint
from distnqs.io.log import read_log

CONFIG = """
seed = 5
n_steps = 24
[lattice]
kind = "chain"
Lx = 8
pbc = true
[hamiltonian]
model = "tfim"
G = 0.9
[ansatz]
model = "rbm"
alpha = 1
param_dtype = "complex128"
[sampler]
kind = "metropolis_local"
n_samples = 128
n_chains = 8
n_discard = 2
[optimizer]
kind = "{kind}"
learning_rate = 0.02
schedule = "cosine"
learning_rate_final = 0.005
sr = {sr}
[run]
checkpoint_every = 5
keep_checkpoints = 2
print_every = 1000
"""
COLUMNS = ("step", "energy_mean", "energy_error", "energy_variance", "R_hat", "acceptance", "learning_rate", "m2")
EXIT_SIGNALLED = 75


def _cfg(tmp_path, kind="adam", sr="false", **replace):
    text = CONFIG.format(kind=kind, sr=sr)
    for old, new in replace.items():
        text = text.replace(old, new)
    path = tmp_path / f"cfg-{kind}-{sr}-{abs(hash(text))}.toml"
    path.write_text(text)
    return path


def _final(outdir):
    steps = checkpoint.list_checkpoints(outdir)
    return checkpoint.read(steps[-1][1])


def _assert_identical(a, b):
    ca, cb = _final(a), _final(b)
    assert ca["step"] == cb["step"]
    for group in ("params", "opt_state", "sampler"):
        la = ca[group] if group != "sampler" else [x for r in ca[group] for x in r]
        lb = cb[group] if group != "sampler" else [x for r in cb[group] for x in r]
        assert len(la) == len(lb)
        for x, y in zip(la, lb):
            assert np.array_equal(x, y), group
    log_a, log_b = read_log(a / "log.h5"), read_log(b / "log.h5")
    for col in COLUMNS:
        assert np.array_equal(log_a[col], log_b[col], equal_nan=True), col
    assert np.array_equal(log_a["step"], np.arange(ca["step"]))  # no duplicated or missing rows
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    assert sa["energy"] == sb["energy"] and sa["step"] == sb["step"]


@pytest.fixture(scope="session")  # see conftest: built once per worker, never rebuilt
def uninterrupted_1(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref1")
    run_cli(["run", str(_cfg(tmp)), "--outdir", str(tmp / "ref")], check=True)
    return tmp / "ref"


def _wait_for_rows(outdir, n, proc, timeout=600):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            return
        try:
            if (outdir / "log.h5").exists() and read_log(outdir / "log.h5")["step"].size >= n:
                return
        except Exception:  # noqa: BLE001 - the file is being created or rebuilt
            pass
        time.sleep(0.02)


@pytest.mark.xdist_group("resume")  # one worker: the module's reference runs are computed once
def test_stop_and_resume_is_bit_identical(tmp_path, uninterrupted_1):
    cfg = _cfg(tmp_path)
    out = tmp_path / "run"
    first = run_cli(["run", str(cfg), "--outdir", str(out), "--stop-after", "7"])
    assert first.returncode == EXIT_SIGNALLED, first.stderr
    assert checkpoint.list_checkpoints(out)[-1][0] == 7
    assert json.loads((out / "summary.json").read_text())["status"] == "stopped"
    second = run_cli(["run", str(cfg), "--outdir", str(out)], check=True)
    assert "resuming from checkpoint-000000007.h5" in second.stdout
    _assert_identical(out, uninterrupted_1)


@pytest.mark.xdist_group("resume")
def test_sigterm_writes_a_checkpoint_and_resume_is_bit_identical(tmp_path, uninterrupted_1):
    cfg = _cfg(tmp_path, **{"n_steps = 24": "n_steps = 24\n"})
    out = tmp_path / "run"
    env = clean_env()
    proc = subprocess.Popen([sys.executable, "-m", "distnqs", "run", str(cfg), "--outdir", str(out)], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_rows(out, 3, proc)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=300)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert proc.returncode == EXIT_SIGNALLED, stderr
    assert "SIGTERM" in stdout
    stopped_at = checkpoint.list_checkpoints(out)[-1][0]
    assert 3 <= stopped_at < 24
    run_cli(["run", str(cfg), "--outdir", str(out)], check=True)
    _assert_identical(out, uninterrupted_1)


@pytest.mark.xdist_group("resume")
def test_kill_9_between_checkpoints_resumes_from_the_last_one(tmp_path, uninterrupted_1):
    cfg = _cfg(tmp_path)
    out = tmp_path / "run"
    crashed = run_cli(["run", str(cfg), "--outdir", str(out)], env_extra={"DISTNQS_FAULT_KILL_AT_STEP": "13"})
    assert crashed.returncode == -signal.SIGKILL
    assert checkpoint.list_checkpoints(out)[-1][0] == 10
    assert read_log(out / "log.h5")["step"].size == 13  # rows 10..12 will be cut on resume
    resumed = run_cli(["run", str(cfg), "--outdir", str(out)], check=True)
    assert "resuming from checkpoint-000000010.h5" in resumed.stdout
    _assert_identical(out, uninterrupted_1)


@pytest.mark.xdist_group("resume")
def test_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path, uninterrupted_1):
    cfg = _cfg(tmp_path)
    out = tmp_path / "run"
    run_cli(["run", str(cfg), "--outdir", str(out), "--stop-after", "12"])
    (s_old, _), (s_new, newest) = checkpoint.list_checkpoints(out)
    assert (s_old, s_new) == (10, 12)
    data = bytearray(newest.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = b"\x00" * 64  # flip bytes in the middle
    newest.write_bytes(bytes(data))
    resumed = run_cli(["run", str(cfg), "--outdir", str(out)], check=True)
    assert "damaged" in resumed.stderr or "unreadable" in resumed.stderr
    assert "resuming from checkpoint-000000010.h5" in resumed.stdout
    _assert_identical(out, uninterrupted_1)


@pytest.mark.xdist_group("resume")
def test_no_valid_checkpoint_is_an_error_and_nothing_is_overwritten(tmp_path):
    cfg = _cfg(tmp_path)
    out = tmp_path / "run"
    run_cli(["run", str(cfg), "--outdir", str(out), "--stop-after", "12"])
    for _, path in checkpoint.list_checkpoints(out):
        path.write_bytes(path.read_bytes()[:300])  # truncated
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = run_cli(["run", str(cfg), "--outdir", str(out)])
    assert proc.returncode == 2
    assert "no valid checkpoint" in proc.stderr.strip().splitlines()[-1]
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(after) == set(before)
    for name in before:
        if name != "config.toml":  # rewritten with the same content
            assert after[name] == before[name], name


@pytest.mark.xdist_group("resume")
def test_changed_physics_is_refused_but_run_length_may_change(tmp_path, uninterrupted_1):
    out = tmp_path / "run"
    run_cli(["run", str(_cfg(tmp_path)), "--outdir", str(out), "--stop-after", "10"])
    changed = run_cli(["run", str(_cfg(tmp_path, **{"G = 0.9": "G = 1.1"})), "--outdir", str(out)])
    assert changed.returncode == 2 and "different [hamiltonian]" in changed.stderr
    longer = _cfg(tmp_path, **{"n_steps = 24": "n_steps = 30"})
    run_cli(["run", str(longer), "--outdir", str(out)], check=True)
    assert json.loads((out / "summary.json").read_text())["step"] == 30
    assert read_log(out / "log.h5")["step"].size == 30
    again = run_cli(["run", str(longer), "--outdir", str(out)], check=True)  # finished: nothing to do
    assert json.loads((out / "summary.json").read_text())["step"] == 30 and "E/N" in again.stdout


@pytest.mark.xdist_group("resume")
def test_restart_moves_the_old_run_aside(tmp_path):
    cfg = _cfg(tmp_path)
    out = tmp_path / "run"
    run_cli(["run", str(cfg), "--outdir", str(out), "--stop-after", "5"])
    proc = run_cli(["run", str(cfg), "--outdir", str(out), "--restart", "--stop-after", "2"])
    assert proc.returncode == EXIT_SIGNALLED
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert len(aside) == 1 and checkpoint.list_checkpoints(aside[0])[-1][0] == 5
    assert checkpoint.list_checkpoints(out)[-1][0] == 2


@pytest.mark.xdist_group("resume")
def test_info_and_plot(tmp_path, uninterrupted_1):
    proc = run_cli(["info", str(uninterrupted_1)], check=True)
    assert "finished at step 24/24" in proc.stdout and "checkpoint-000000024.h5" in proc.stdout and "ok" in proc.stdout
    png = tmp_path / "e.png"
    run_cli(["plot", str(uninterrupted_1), "--output", str(png)], check=True)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = run_cli(["info", str(tmp_path)])
    assert bad.returncode == 2 and "holds no distnqs run" in bad.stderr


# --------------------------------------------------------------------------- MPI


@pytest.fixture(scope="session")  # see conftest: built once per worker, never rebuilt
def uninterrupted_2(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref2")
    run_cli(["run", str(_cfg(tmp, kind="sgd", sr="true")), "--outdir", str(tmp / "ref")], np_=2, check=True)
    return tmp / "ref"


@requires_mpi
@pytest.mark.xdist_group("resume")
def test_two_ranks_preempted_by_signal_resume_bit_identically(tmp_path, uninterrupted_2):
    """Preemption as Slurm does it: SIGTERM to every rank of the job, then the same command again."""
    cfg = _cfg(tmp_path, kind="sgd", sr="true")
    out = tmp_path / "run"
    cmd = mpirun_cmd(2) + [sys.executable, "-m", "distnqs", "run", str(cfg), "--outdir", str(out)]
    proc = subprocess.Popen(cmd, env=clean_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    _wait_for_rows(out, 3, proc)
    ranks = []
    for pid in subprocess.run(["pgrep", "-f", str(out)], capture_output=True, text=True).stdout.split():
        try:
            argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if int(pid) != proc.pid and argv[0].decode() == sys.executable:
            ranks.append(int(pid))
    if len(ranks) != 2:
        proc.kill()
        out_, err_ = proc.communicate()
        raise AssertionError(f"expected 2 rank processes, found {ranks}; job returncode {proc.returncode}\n{out_[-2000:]}\n{err_[-3000:]}")
    for pid in ranks:  # as Slurm's --signal does: every rank gets the signal
        os.kill(pid, signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=300)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert proc.returncode == EXIT_SIGNALLED, (proc.returncode, stderr[-2000:])
    ckpt = checkpoint.read(checkpoint.list_checkpoints(out)[-1][1])
    assert ckpt["attrs"]["n_ranks"] == 2 and len(ckpt["sampler"]) == 2
    run_cli(["run", str(cfg), "--outdir", str(out)], np_=2, check=True)
    _assert_identical(out, uninterrupted_2)


@requires_mpi
@pytest.mark.xdist_group("resume")
def test_two_ranks_kill_9_resume_bit_identically(tmp_path, uninterrupted_2):
    cfg = _cfg(tmp_path, kind="sgd", sr="true")
    out = tmp_path / "run"
    crashed = run_cli(["run", str(cfg), "--outdir", str(out)], np_=2, env_extra={"DISTNQS_FAULT_KILL_AT_STEP": "13", "DISTNQS_FAULT_RANK": "1"})
    assert crashed.returncode != 0
    assert checkpoint.list_checkpoints(out)[-1][0] == 10
    run_cli(["run", str(cfg), "--outdir", str(out)], np_=2, check=True)
    _assert_identical(out, uninterrupted_2)


@requires_mpi
@pytest.mark.xdist_group("resume")
def test_resume_on_a_different_number_of_ranks_warns_and_continues(tmp_path):
    cfg = _cfg(tmp_path, kind="sgd", sr="true")
    out = tmp_path / "run"
    run_cli(["run", str(cfg), "--outdir", str(out), "--stop-after", "10"], np_=2)
    proc = run_cli(["run", str(cfg), "--outdir", str(out)], np_=1, check=True)
    assert "written by 2 rank(s), this run has 1" in proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["step"] == 24 and summary["n_ranks"] == 1
    assert summary["reference"]["relative_error"] < 0.05


@requires_mpi
@pytest.mark.xdist_group("resume")
def test_a_rank_that_raises_aborts_the_whole_job_quickly(tmp_path):
    cfg = _cfg(tmp_path, **{"n_steps = 24": "n_steps = 100000", "checkpoint_every = 5": "checkpoint_every = 0"})
    t0 = time.time()
    proc = run_cli(["run", str(cfg), "--outdir", str(tmp_path / "run")], np_=2, timeout=300,
                   env_extra={"DISTNQS_FAULT_RAISE_AT_STEP": "3", "DISTNQS_FAULT_RANK": "1"})
    elapsed = time.time() - t0
    assert proc.returncode != 0
    # the failing rank's traceback, or at least the abort, reaches the job's stderr
    assert "injected fault on rank 1" in proc.stderr or "Abort" in proc.stderr or "ABORT" in proc.stderr, proc.stderr[-3000:]
    assert elapsed < 120, elapsed  # includes start-up and compilation; a hang would hit the timeout


# ---------------------------------------------------------------------------
# Resume semantics: schedules in absolute steps, changed keys warned and recorded
# ---------------------------------------------------------------------------

def _cosine(step, horizon, lr=0.02, final=0.005):
    import optax

    return float(optax.cosine_decay_schedule(lr, horizon, alpha=final / lr)(step))


@pytest.fixture(scope="session")  # see conftest: built once per worker, never rebuilt
def finished_20(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sched20")
    run_cli(["run", str(_cfg(tmp, **{"n_steps = 24": "n_steps = 20"})), "--outdir", str(tmp / "run")], check=True)
    return tmp / "run"


def _copy_run(src, tmp_path):
    import shutil

    dst = tmp_path / "run"
    shutil.copytree(src, dst)
    return dst


def _history(outdir):
    path = outdir / "config_history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.xdist_group("resume")
def test_longer_n_steps_keeps_the_schedules_final_value(tmp_path, finished_20):
    out = _copy_run(finished_20, tmp_path)
    longer = run_cli(["run", str(_cfg(tmp_path, **{"n_steps = 24": "n_steps = 30"})), "--outdir", str(out)], check=True)
    lr = read_log(out / "log.h5")["learning_rate"]
    assert lr.size == 30
    assert np.allclose(lr[:20], [_cosine(t, 20) for t in range(20)], rtol=1e-12)
    assert np.allclose(lr[20:], 0.005, rtol=1e-12)  # the final value, not a reshaped cosine
    assert "learning-rate schedule ends at step 20" in longer.stderr and "--reschedule" in longer.stderr
    assert "n_steps changed on resume: 20 -> 30" in longer.stderr
    (entry,) = _history(out)
    assert entry["step"] == 20 and entry["changes"] == {"n_steps": [20, 30]}


@pytest.mark.xdist_group("resume")
def test_reschedule_stretches_the_schedule(tmp_path, finished_20):
    out = _copy_run(finished_20, tmp_path)
    cfg = _cfg(tmp_path, **{"n_steps = 24": "n_steps = 30"})
    proc = run_cli(["run", str(cfg), "--outdir", str(out), "--reschedule"], check=True)
    lr = read_log(out / "log.h5")["learning_rate"]
    assert np.allclose(lr[20:], [_cosine(t, 30) for t in range(20, 30)], rtol=1e-12)
    assert not np.allclose(lr[20:], 0.005)
    assert "[optimizer] schedule_steps changed on resume: 20 -> 30" in proc.stderr


@pytest.mark.xdist_group("resume")
def test_changed_learning_rate_is_warned_and_recorded(tmp_path, finished_20):
    out = _copy_run(finished_20, tmp_path)
    cfg = _cfg(tmp_path, **{"n_steps = 24": "n_steps = 22", "learning_rate = 0.02": "learning_rate = 0.03",
                            "n_discard = 2": "n_discard = 3"})
    proc = run_cli(["run", str(cfg), "--outdir", str(out)], check=True)
    assert "distnqs: warning: [optimizer] learning_rate changed on resume: 0.02 -> 0.03" in proc.stderr
    assert "distnqs: warning: [sampler] n_discard changed on resume: 2 -> 3" in proc.stderr
    (entry,) = _history(out)
    assert entry["step"] == 20
    assert entry["changes"]["[optimizer] learning_rate"] == [0.02, 0.03]
    assert entry["changes"]["[sampler] n_discard"] == [2, 3]
    assert "time" in entry
    again = run_cli(["run", str(cfg), "--outdir", str(out)], check=True)  # finished, nothing changed
    assert "changed on resume" not in again.stderr and len(_history(out)) == 1


@pytest.mark.xdist_group("resume")
def test_same_config_resume_warns_nothing(tmp_path):
    cfg = _cfg(tmp_path)
    out = tmp_path / "run"
    run_cli(["run", str(cfg), "--outdir", str(out), "--stop-after", "4"])
    resumed = run_cli(["run", str(cfg), "--outdir", str(out), "--stop-after", "1"])
    assert "warning" not in resumed.stderr and not _history(out)


def test_a_run_stopped_at_its_last_step_gets_its_final_evaluation_on_resume(tmp_path):
    """Stopped at step 12 of 24, then resumed with n_steps lowered to 12 (a run judged converged;
    the same state as a run preempted during its final evaluation): the resume runs no step but
    does the final evaluation, and its summary equals that of an uninterrupted 12-step run."""
    extra = {"n_steps = 24": "n_steps = {n}", 'learning_rate_final = 0.005': 'learning_rate_final = 0.005\nschedule_steps = 24',
             "print_every = 1000": "print_every = 1000\neval_steps = 2"}
    long_cfg = _cfg(tmp_path, **{k: v.replace("{n}", "24") for k, v in extra.items()})
    short_cfg = _cfg(tmp_path, **{k: v.replace("{n}", "12") for k, v in extra.items()})
    out, ref = tmp_path / "run", tmp_path / "ref"
    assert run_cli(["run", str(long_cfg), "--outdir", str(out), "--stop-after", "12"]).returncode == EXIT_SIGNALLED
    resumed = run_cli(["run", str(short_cfg), "--outdir", str(out)], check=True)
    assert "final evaluation over 2 x 128 samples" in resumed.stdout
    run_cli(["run", str(short_cfg), "--outdir", str(ref)], check=True)
    got, want = (json.loads((d / "summary.json").read_text()) for d in (out, ref))
    assert got["status"] == want["status"] == "finished"
    assert got["final_evaluation_steps"] == want["final_evaluation_steps"] == 2
    assert got["energy"] == want["energy"] and got["observables"] == want["observables"]
    again = run_cli(["run", str(short_cfg), "--outdir", str(out)], check=True)  # nothing left: reported, not resampled
    assert "final evaluation" not in again.stdout
    assert json.loads((out / "summary.json").read_text())["energy"] == got["energy"]
