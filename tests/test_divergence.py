"""Divergence guard, rank consistency and honest numbers (issue 13, parts 1, 4, 6)."""

import json

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import requires_mpi, run_cli
from distnqs.errors import DistnqsWarning
from distnqs.io import checkpoint
from distnqs.io.log import read_log
from distnqs.optim.cg import conjugate_gradient
from distnqs.optim.guard import StepGuard, guarded_update

EXIT_DIVERGED = 65
EXIT_INCONSISTENT = 70

TFIM_3x3 = """
seed = 3
n_steps = {n_steps}
[lattice]
kind = "square"
Lx = 3
Ly = 3
pbc = true
[hamiltonian]
model = "tfim"
G = 3.0
[ansatz]
model = "rbm"
alpha = 1
[sampler]
kind = "metropolis_local"
n_samples = 128
n_chains = 8
n_discard = 2
[optimizer]
kind = "sgd"
learning_rate = {lr}
sr = {sr}
[run]
checkpoint_every = {every}
keep_checkpoints = 2
print_every = 1000
"""


def _cfg(tmp_path, n_steps=40, lr=500, sr="false", every=2, extra=""):
    path = tmp_path / "cfg.toml"
    path.write_text(TFIM_3x3.format(n_steps=n_steps, lr=lr, sr=sr, every=every) + extra)
    return path


def _strict(text):
    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def _checkpoint_arrays_finite(outdir):
    found = checkpoint.list_checkpoints(outdir)
    assert found
    for _, path in found:
        with h5py.File(path, "r") as f:
            arrays = []
            f.visititems(lambda name, obj: arrays.append(obj[()]) if isinstance(obj, h5py.Dataset) else None)
        for a in arrays:
            if np.issubdtype(a.dtype, np.inexact):
                assert np.all(np.isfinite(a)), path
    return found


# ---------------------------------------------------------------------------
# Unit tests: the step guard and the CG solver
# ---------------------------------------------------------------------------

def _guard_call(guard, updates, fs_length=jnp.nan, variance=1.0, state=None, grad=None):
    params = {"w": jnp.zeros(4)}
    state = guard.init() if state is None else state
    grad = {"w": jnp.ones(4)} if grad is None else grad
    return guarded_update(guard, state, params, updates, energy=jnp.asarray(-1.0), variance=jnp.asarray(variance),
                          grad=grad, direction=updates, fs_length=jnp.asarray(fs_length))


def test_step_guard_rescales_a_huge_update_to_the_norm_cap():
    updates = {"w": jnp.full(4, 50.0)}  # |u| = 100
    params, accept, state, report = jax.jit(lambda u: _guard_call(StepGuard(max_update_norm=2.0, max_fs_length=0.0), u))(updates)
    assert bool(accept) and int(report["action"]) == 1 and float(report["scale"]) == pytest.approx(0.02)
    np.testing.assert_allclose(params["w"], np.full(4, 1.0), rtol=1e-14)  # rescaled to norm 2
    assert int(state.n_rescaled) == 1


def test_step_guard_caps_the_fubini_study_length_and_leaves_small_steps_bit_identical():
    updates = {"w": jnp.full(4, 0.5)}
    params, accept, _, report = _guard_call(StepGuard(max_fs_length=0.25), updates, fs_length=4.0)  # sqrt(0.25/4) = 0.25
    assert float(report["scale"]) == pytest.approx(0.25) and bool(accept)
    np.testing.assert_allclose(params["w"], np.full(4, 0.125), rtol=1e-14)
    params, _, _, report = _guard_call(StepGuard(max_fs_length=0.25), updates, fs_length=0.1)
    assert int(report["action"]) == 0 and np.array_equal(np.asarray(params["w"]), np.full(4, 0.5))
    params, accept, state, report = _guard_call(StepGuard(max_fs_length=0.25, mode="reject"), updates, fs_length=4.0)
    assert not bool(accept) and int(report["action"]) == 2 and np.array_equal(np.asarray(params["w"]), np.zeros(4))
    assert int(state.n_rejected) == 1


def test_variance_alarm_rejects_an_outlier_against_the_running_median():
    guard = StepGuard(variance_alarm=20.0)
    state = guard.init()
    small = {"w": jnp.full(4, 0.01)}
    for k in range(16):
        _, accept, state, report = _guard_call(guard, small, variance=4.0 + 0.1 * k, state=state)
        assert bool(accept)
    _, accept, state2, report = _guard_call(guard, small, variance=468.0, state=state)
    assert not bool(accept) and int(report["action"]) == 3
    _, accept, _, _ = _guard_call(guard, small, variance=50.0, state=state)  # 50 < 20 x 4.75
    assert bool(accept)


def test_nonfinite_gradient_is_reported_first_and_nothing_is_applied():
    updates = {"w": jnp.full(4, jnp.nan)}
    params, accept, _, report = _guard_call(StepGuard(), updates, grad={"w": jnp.array([1.0, jnp.inf, 0.0, 0.0])})
    assert not bool(accept) and int(report["code"]) == 3 and int(report["action"]) == 4  # "gradient"
    assert np.isinf(float(report["value"])) and np.array_equal(np.asarray(params["w"]), np.zeros(4))


def test_cg_with_infinite_gradient_returns_nan_not_a_silent_zero():
    A = jnp.diag(jnp.array([2.0, 3.0, 4.0]))
    b = jnp.array([1.0, jnp.inf, 1.0])
    x_jax, _ = jax.scipy.sparse.linalg.cg(lambda v: A @ v, b, tol=1e-10, maxiter=50)
    assert np.array_equal(np.asarray(x_jax), np.zeros(3))  # the failure this guards against
    x, info = jax.jit(lambda b: conjugate_gradient(lambda v: A @ v, b, tol=1e-10, maxiter=50))(b)
    assert np.all(np.isnan(np.asarray(x)))
    params, accept, _, report = _guard_call(StepGuard(), {"w": jnp.concatenate([x, x[:1]])})
    assert not bool(accept) and int(report["code"]) == 4  # "update"


def test_cg_matches_jax_cg_bit_for_bit_and_reports_xAx():
    key = jax.random.PRNGKey(0)
    M = jax.random.normal(key, (12, 12))
    A = M @ M.T / 12 + 0.1 * jnp.eye(12)
    b = {"a": jax.random.normal(jax.random.PRNGKey(1), (7,)), "b": jax.random.normal(jax.random.PRNGKey(2), (5,))}

    def matvec(v):
        y = A @ jnp.concatenate([v["a"], v["b"]])
        return {"a": y[:7], "b": y[7:]}

    x_ref, _ = jax.jit(lambda b: jax.scipy.sparse.linalg.cg(matvec, b, tol=1e-12, maxiter=100))(b)
    x, info = jax.jit(lambda b: conjugate_gradient(matvec, b, tol=1e-12, maxiter=100))(b)
    for k in x:
        assert np.array_equal(np.asarray(x[k]), np.asarray(x_ref[k]))
    flat = jnp.concatenate([x["a"], x["b"]])
    assert float(info["xAx"]) == pytest.approx(float(flat @ A @ flat), rel=1e-9)


# ---------------------------------------------------------------------------
# End to end
# ---------------------------------------------------------------------------

def test_learning_rate_500_stops_with_one_line_and_only_finite_checkpoints(tmp_path):
    out = tmp_path / "out"
    proc = run_cli(["run", str(_cfg(tmp_path, every=1)), "--outdir", str(out), "--quiet"])
    assert proc.returncode == EXIT_DIVERGED, proc.stdout + proc.stderr
    lines = [l for l in proc.stderr.splitlines() if "diverged" in l]
    assert len(lines) == 1, proc.stderr
    step = int(lines[0].split("diverged at step ")[1].split(":")[0])
    quantity = lines[0].split(": ")[2].split(" = ")[0]
    assert 2 <= step < 40 and quantity in ("energy", "variance", "gradient", "update", "parameters")
    found = _checkpoint_arrays_finite(out)
    assert len(found) == min(2, step - 1) and found[-1][0] == step - 1  # the newest finite state is kept
    summary = _strict((out / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["divergence"]["step"] == step
    assert summary["divergence"]["quantity"] == quantity


def test_rollback_recovers_records_the_event_and_stops_after_max_rollbacks(tmp_path):
    # lr = 12 without SR diverges at step 2-4; after 4 halvings (lr 0.75) it runs to the end (measured).
    extra = 'on_divergence = "rollback"\nmax_rollbacks = {m}\n'
    out = tmp_path / "ok"
    proc = run_cli(["run", str(_cfg(tmp_path, n_steps=30, lr=12, every=5, extra=extra.format(m=4))), "--outdir", str(out), "--quiet"])
    summary = _strict((out / "summary.json").read_text())
    events = summary["guard"]["rollback_events"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 1 <= len(events) <= 4 and summary["guard"]["rollbacks"] == len(events)
    assert summary["guard"]["learning_rate_scale"] == 0.5 ** len(events)
    assert summary["status"] == "finished" and np.isfinite(summary["energy_per_site"])
    log = read_log(out / "log.h5")
    assert np.array_equal(log["step"], np.arange(30))  # rows of undone steps were cut
    assert log["rollbacks"][-1] == len(events) and np.all(np.isfinite(log["energy_mean"]))
    with h5py.File(out / "log.h5", "r") as f:
        assert [e["step"] for e in json.loads(f.attrs["events"])] == [e["step"] for e in events]
    assert np.allclose(log["learning_rate"][-1], 12 * 0.5 ** len(events))

    out = tmp_path / "stop"
    proc = run_cli(["run", str(_cfg(tmp_path, n_steps=30, lr=12, every=5, extra=extra.format(m=0))), "--outdir", str(out), "--quiet"])
    assert proc.returncode == EXIT_DIVERGED
    summary = _strict((out / "summary.json").read_text())
    assert summary["guard"]["rollbacks"] == 0 and summary["status"] == "diverged"
    assert summary["divergence"]["step"] == events[0]["step"]  # the same first divergence
    assert events[0]["step"] < 5 and checkpoint.list_checkpoints(out) == []  # diverged before the first checkpoint: none written


@requires_mpi
def test_ranks_with_different_parameters_abort_with_one_line(tmp_path):
    extra = "consistency_every = 4\n"
    out = tmp_path / "out"
    proc = run_cli(["run", str(_cfg(tmp_path, n_steps=12, lr=0.02, sr="true", every=100, extra=extra)), "--outdir", str(out), "--quiet"],
                   np_=2, env_extra={"DISTNQS_FAULT_PERTURB_AT_STEP": "5", "DISTNQS_FAULT_RANK": "1"})
    assert proc.returncode == EXIT_INCONSISTENT, proc.stdout + proc.stderr
    lines = [l for l in proc.stderr.splitlines() if "different parameters" in l]
    assert len(lines) == 1 and "after step 8" in lines[0]
    assert checkpoint.list_checkpoints(out) == []  # nothing of the inconsistent state was written
    summary = _strict((out / "summary.json").read_text())
    assert summary["status"] == "inconsistent" and summary["step"] == 7


def test_a_state_collapsed_onto_the_neel_states_is_reported_not_passed_off():
    """The invariant RBM on the 4x4 Heisenberg torus with a shift of 0.01 from the first step (seed 1)
    collapses onto the two Neel states (E/N = -2, every chain frozen in one of them): the run ends,
    but with a warning that the chains disagree, not a bare energy."""
    from distnqs import config, driver

    cfg = config.resolve({
        "seed": 1, "n_steps": 30, "lattice": {"Lx": 4, "Ly": 4, "pbc": True},
        "hamiltonian": {"model": "heisenberg", "total_sz": 0, "sign_rule": True},
        "ansatz": {"model": "rbm_symm", "alpha": 4, "symmetries": "translations"},
        "sampler": {"kind": "metropolis_exchange", "n_samples": 512, "n_chains": 64, "n_discard": 8},
        "optimizer": {"kind": "sgd", "learning_rate": 0.01, "sr": True, "diag_shift": 0.01},
        "run": {"reference": False, "eval_steps": 2, "print_every": 0},
    })
    with pytest.warns(DistnqsWarning, match="the Markov chains disagree") as caught:
        summary, code = driver.run(cfg)
    assert code == 0 and summary["energy_per_site"] > -2.2  # exact -2.807: collapsed
    assert not summary["energy"]["R_hat"] <= driver.R_HAT_WARN
    own = [w for w in caught if issubclass(w.category, DistnqsWarning)]
    assert len(own) == 1 and "\n" not in str(own[0].message)  # one line (the CLI prints it as "distnqs: warning: ...")
