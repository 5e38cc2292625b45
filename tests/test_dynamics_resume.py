"""distnqs evolve: stop / signal / resume bit-identical (1 and 2 ranks), log rows, bad keys."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, assert_one_line_error, assert_same_final_checkpoints, clean_env, requires_mpi, run_cli
from distnqs.io import checkpoint
from distnqs.io.log import read_log

CONFIG = """
seed = 7
[lattice]
kind = "chain"
Lx = 6
pbc = true
[hamiltonian]
model = "tfim"
G = 1.0
[ansatz]
model = "rbm"
alpha = 1
param_dtype = "complex128"
[sampler]
n_samples = 128
n_chains = 8
n_discard = 2
[run]
checkpoint_every = 2
print_every = 1000
eval_steps = 1
[dynamics]
t_final = 0.3
dt = 0.05
integrator = "rk23"
rk23_tol = 0.02
diag_shift = 1e-3
"""
EXIT_SIGNALLED = 75
COLUMNS = ("step", "t", "dt", "n_substeps", "n_rejected", "energy_mean", "energy_error", "energy_variance",
           "sx", "sx_error", "szsz", "szsz_error", "tdvp_residual", "acceptance")


def _cfg(tmp_path, text=CONFIG):
    path = tmp_path / "quench.toml"
    path.write_text(text)
    return path


def _assert_identical(a, b):
    ca, _ = assert_same_final_checkpoints(a, b)
    assert ca["step"] == 6
    la, lb = read_log(a / "log.h5"), read_log(b / "log.h5")
    for col in COLUMNS:
        assert np.array_equal(la[col], lb[col], equal_nan=True), col
    assert np.array_equal(la["step"], np.arange(6)) and np.allclose(la["t"], 0.05 * np.arange(6))
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    assert sa["observables"] == sb["observables"] and sa["t"] == sb["t"] == pytest.approx(0.3)


def _wait_for_rows(outdir, n, proc, timeout=600):
    import time

    t0 = time.time()
    while time.time() - t0 < timeout and proc.poll() is None:
        try:
            if (outdir / "log.h5").exists() and read_log(outdir / "log.h5")["step"].size >= n:
                return
        except Exception:  # noqa: BLE001 - being written
            pass
        time.sleep(0.02)


def test_evolve_sigusr1_kill_then_resume_is_bit_identical(tmp_path):
    cfg = _cfg(tmp_path)
    ref = tmp_path / "ref"
    done = run_cli(["evolve", str(cfg), "--outdir", str(ref)], check=True)
    assert "distnqs: t = 0.3" in done.stdout
    summary = json.loads((ref / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["exact"] is not None
    assert summary["accepted_substeps"] >= 6
    from distnqs.io.info import describe_run
    from distnqs.io.plot import plot_run

    assert plot_run(ref).name == "dynamics.png" and (ref / "dynamics.png").stat().st_size > 10_000
    assert "latest time t = 0.25" in describe_run(ref)
    out = tmp_path / "run"
    env = {**clean_env(), "DISTNQS_FAULT_STEP_SECONDS": "0.5"}
    proc = subprocess.Popen([sys.executable, "-m", "distnqs", "evolve", str(cfg), "--outdir", str(out)], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_rows(out, 2, proc)
    proc.send_signal(signal.SIGUSR1)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == EXIT_SIGNALLED, (stdout[-2000:], stderr[-2000:])
    assert "SIGUSR1" in stdout
    stopped_at = checkpoint.list_checkpoints(out)[-1][0]
    assert 2 <= stopped_at < 6
    if stopped_at + 1 < 6:  # then a node dies (SIGKILL) after the next step; the rerun resumes from the last checkpoint
        killed = run_cli(["evolve", str(cfg), "--outdir", str(out)], env_extra={"DISTNQS_FAULT_KILL_AT_STEP": str(stopped_at + 1)})
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    again = run_cli(["evolve", str(cfg), "--outdir", str(out)], check=True)
    assert "resuming from checkpoint-" in again.stdout
    _assert_identical(out, ref)


@requires_mpi
def test_evolve_two_ranks_stop_then_resume_is_bit_identical(tmp_path):
    cfg = _cfg(tmp_path)
    ref = tmp_path / "ref"
    run_cli(["evolve", str(cfg), "--outdir", str(ref)], np_=2, check=True)
    out = tmp_path / "run"
    first = run_cli(["evolve", str(cfg), "--outdir", str(out), "--stop-after", "3"], np_=2)
    assert first.returncode == EXIT_SIGNALLED, first.stderr[-2000:]
    ckpt = checkpoint.read(checkpoint.list_checkpoints(out)[-1][1])
    assert ckpt["step"] == 3 and ckpt["attrs"]["n_ranks"] == 2 and len(ckpt["sampler"]) == 2
    run_cli(["evolve", str(cfg), "--outdir", str(out)], np_=2, check=True)
    _assert_identical(out, ref)


@pytest.mark.parametrize(
    "change, fragments",
    [
        (("integrator = \"rk23\"", "integrater = \"rk4\""), ("[dynamics] has no option 'integrater'",)),
        (("integrator = \"rk23\"", "integrator = \"rk5\""), ("unknown dynamics integrator 'rk5'",)),
        (("dt = 0.05", "dt = -0.05"), ("[dynamics] dt must be",)),
        (("dt = 0.05", "dt = 0.07"), ("is not a whole number of steps",)),
        (("diag_shift = 1e-3", "initial_state = \"checkpoint\""), ("needs checkpoint",)),
        (("param_dtype = \"complex128\"", "param_dtype = \"float64\""), ("real-time evolution needs a complex log psi",)),
    ],
)
def test_evolve_bad_keys_are_one_line_errors(tmp_path, capsys, change, fragments):
    """In process (the CLI's main): one ``distnqs: error:`` line, exit 2, nothing created."""
    from distnqs.cli import main

    cfg = _cfg(tmp_path, CONFIG.replace(*change))
    code = main(["evolve", str(cfg), "--outdir", str(tmp_path / "x"), "--check"])
    assert_one_line_error(_Completed(code, capsys.readouterr()), *fragments)
    assert not (tmp_path / "x").exists()


class _Completed:
    def __init__(self, code, captured):
        self.returncode, self.stdout, self.stderr = code, captured.out, captured.err


def test_run_refuses_a_dynamics_config_and_evolve_needs_one(tmp_path, capsys):
    from distnqs.cli import main

    cfg = _cfg(tmp_path)
    assert_one_line_error(_Completed(main(["run", str(cfg), "--outdir", str(tmp_path / "x")]), capsys.readouterr()), "distnqs evolve")
    plain = _cfg(tmp_path, CONFIG.split("[dynamics]")[0])
    assert_one_line_error(_Completed(main(["evolve", str(plain), "--outdir", str(tmp_path / "y")]), capsys.readouterr()),
                          "no [dynamics] table")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
