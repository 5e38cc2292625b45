"""Observables physicists plot (``[observables]`` sx, correlations, structure_factor; ``measure``).

The estimators are checked exactly (full enumeration weights, 1e-10) against
NetKet sparse matrices for a fixed random complex RBM, against exact
diagonalization (a table-lookup "ansatz" holding the Lanczos ground state), and
for the Marshall rotation; the Monte Carlo path (``measure``) against the exact
values within error bars; and one short in-process run for summary.json,
observables.h5 and ``distnqs plot``.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import netket as nk
import numpy as np
import pytest
import tomli_w

from distnqs import cli
from distnqs.models import RBM, Ansatz
from distnqs.observables import ObservableSet, measure
from distnqs.operators import heisenberg, tfim
from distnqs.operators import observables as ops
from distnqs.operators.exact import ground_state
from distnqs.operators.lattice import Lattice


# ---------------------------------------------------------------------------
# Exact references: <v|O|v> with NetKet sparse matrices
# ---------------------------------------------------------------------------

def _full_vector(hi, v):
    """``v`` (on ``hi``, possibly a fixed-Sz sector) as a vector over all 2^N basis states, with
    the basis index of a configuration ``sum_i [s_i > 0] 2^(N-1-i)`` (flipping site i: XOR 2^(N-1-i))."""
    n = hi.size
    powers = 2 ** np.arange(n - 1, -1, -1)
    full = np.zeros(2**n, complex)
    full[(np.asarray(hi.all_states()) > 0).astype(np.int64) @ powers] = v / np.linalg.norm(v)
    return full, powers


def _exact_observables(obs: ObservableSet, hi, v):
    """What the estimators should give for the state ``v``, computed on the basis directly:
    sigma^z_i sigma^z_j |s> = s_i s_j |s>, (sigma^x_i sigma^x_j + sigma^y_i sigma^y_j)|s> = (1 - s_i s_j)|s^(ij)>,
    sigma^x_i |s> = |s^(i)> (no local values, no wave-function ratios)."""
    n = obs.lattice.n_sites
    full, powers = _full_vector(hi, v)
    idx = np.arange(2**n)
    spins = np.where((idx[:, None] & powers[None]) > 0, 1.0, -1.0)  # (2^N, N)
    prob = np.abs(full) ** 2
    M = {"zz": np.einsum("s,si,sj->ij", prob, spins, spins)}
    if obs.exchange:
        ss = M["zz"].copy()
        for i in range(n):
            for j in range(n):
                if i != j:
                    ss[i, j] += np.vdot(full, (1 - spins[:, i] * spins[:, j]) * full[idx ^ powers[i] ^ powers[j]]).real
        np.fill_diagonal(ss, 3.0)
        M["ss"] = ss / 4.0  # S.S = sigma.sigma / 4
    t = obs.tables
    out = {}
    for kind, m in M.items():
        corr = np.array([np.sum(t["weight"][d] * m[np.arange(n), t["partner"][d]]) for d in range(len(t["weight"]))])
        out[f"correlation_{kind}"], out[f"pairs_{kind}"] = corr, m
        out[f"structure_factor_{kind}"] = np.einsum("ki,ij,kj->k", t["phases"], m, np.conj(t["phases"])) / n
    out["sx"] = np.mean([np.vdot(full, full[idx ^ powers[i]]) for i in range(n)])
    return out


def _enumerated(obs: ObservableSet, log_psi, params, states):
    """Estimator averages with exact |psi|^2 weights over all ``states`` (one compiled program)."""

    @jax.jit
    def averages(p, x):
        lp = log_psi(p, x)
        w = jnp.exp(2 * (lp.real - jnp.max(lp.real)))
        w = w / jnp.sum(w)
        values = obs.local_values(log_psi, p, x, lp)
        return {k: jnp.tensordot(w, v, axes=(0, 0)) for k, v in values.items()}

    return {k: np.asarray(v) for k, v in averages(params, states).items()}


def _rbm(n, seed=3):
    ansatz = Ansatz(RBM(alpha=1, param_dtype=jnp.complex128, init_std=0.4), n)
    return ansatz, ansatz.init(jax.random.PRNGKey(seed))


def _vector(log_psi, params, states):
    lp = np.asarray(jax.jit(log_psi)(params, states))
    return np.exp(lp - lp.real.max())


@pytest.mark.parametrize("pbc,exchange", [(False, True), (True, True), (False, False)])
def test_estimators_equal_exact_expectations_of_a_random_rbm(pbc, exchange):
    """Fixed complex RBM on 3x3 (open / periodic; 512 states): every local-value average with
    |psi|^2 weights equals <psi|O|psi> computed on the basis (checked against NetKet's operators), to 1e-10."""
    lattice = Lattice(3, 3, pbc)
    ansatz, params = _rbm(9)
    obs = ObservableSet(lattice, sx=True, correlations=True, structure_factor=True, exchange=exchange, chunk_size=100)
    hi = nk.hilbert.Spin(0.5, 9)
    states = jnp.asarray(hi.all_states(), jnp.float64)
    est = _enumerated(obs, ansatz.log_psi, params, states)
    v = _vector(ansatz.log_psi, params, states)
    exact = _exact_observables(obs, hi, v)
    assert set(est) == {"sx", "correlation_zz", "structure_factor_zz"} | ({"correlation_ss", "structure_factor_ss"} if exchange else set())
    for key, value in est.items():
        np.testing.assert_allclose(value, exact[key], atol=1e-10, err_msg=key)
    # the basis formulas agree with NetKet's operators (pair (0, 4): sigma.sigma, or sigma^z sigma^z)
    v = v / np.linalg.norm(v)
    sx, sy, sz = nk.operator.spin.sigmax, nk.operator.spin.sigmay, nk.operator.spin.sigmaz
    pair = sz(hi, 0) @ sz(hi, 4) + ((sx(hi, 0) @ sx(hi, 4) + sy(hi, 0) @ sy(hi, 4)) if exchange else 0.0)
    kind = "ss" if exchange else "zz"
    scale = 4.0 if exchange else 1.0
    np.testing.assert_allclose(exact[f"pairs_{kind}"][0, 4] * scale, np.vdot(v, pair.to_sparse() @ v), atol=1e-12)
    sx_nk = np.vdot(v, (sum(sx(hi, i) for i in range(9)) * (1 / 9)).to_sparse() @ v)
    np.testing.assert_allclose(exact["sx"], sx_nk, atol=1e-12)
    # sanity of the conventions: C(0) = <sz sz> = 1 and S.S(0) = 3/4
    assert np.isclose(est["correlation_zz"][0].real, 1.0, atol=1e-12)
    if exchange:
        assert np.isclose(est["correlation_ss"][0].real, 0.75, atol=1e-12)


def test_displacement_classes_of_open_and_periodic_lattices():
    disp, partner, weight, distance = ops.displacement_classes(Lattice(4, 3, False))
    assert len(disp) == 4 * 3 + 3 * 2  # half of the (2Lx-1)(2Ly-1) displacements, +0 once
    np.testing.assert_allclose(weight.sum(axis=1), 1.0)
    d = [tuple(x) for x in disp].index((1, 0))
    assert np.count_nonzero(weight[d]) == 3 * 3  # (Lx - 1) * Ly pairs
    assert distance[0] == 0 and np.all(np.diff(distance) >= 0)
    disp, partner, weight, distance = ops.displacement_classes(Lattice(4, 4, True))
    assert len(disp) == 16 and np.all(np.count_nonzero(weight, axis=1) == 16)
    assert distance.max() == np.hypot(2, 2)  # minimum image
    k = ops.k_grid(Lattice(4, 4, True))
    assert k.shape == (17, 2) and np.allclose(k[-1], [np.pi, np.pi]) and np.allclose(k[10], [np.pi, np.pi])


def _table_ansatz(hi, v):
    """log psi from a table of amplitudes over all 2^N configurations (0 outside ``hi``'s sector)."""
    n = hi.size
    states = np.asarray(hi.all_states())
    powers = 2 ** np.arange(n - 1, -1, -1)
    table = np.zeros(2**n, complex)
    table[((states > 0).astype(np.int64) @ powers)] = v
    log_table = jnp.asarray(np.log(np.where(table == 0, 1e-300, table) + 0j))

    def log_psi(params, s):
        return log_table[jnp.sum((s > 0).astype(jnp.int64) * powers, axis=-1)]

    return log_psi, jnp.asarray(states, jnp.float64)


def test_ground_state_correlations_on_4x4_equal_exact_diagonalization():
    """Heisenberg 4x4 periodic (total Sz = 0, 12870 states): the estimators fed the Lanczos
    ground state (a table-lookup ansatz) give the ED correlations and S(k) to 1e-10; with the
    Marshall-rotated Hamiltonian and its own ground state the physical S.S is the same."""
    lattice = Lattice(4, 4, True)
    results = {}
    for sign_rule in (False, True):
        H = heisenberg(lattice, sign_rule=sign_rule, total_sz=0)
        energy, v = ground_state(H)
        hi = H.hilbert
        obs = ObservableSet(lattice, correlations=True, structure_factor=True, exchange=True, sign_rule=sign_rule)
        log_psi, states = _table_ansatz(hi, v)
        est = _enumerated(obs, log_psi, None, states)
        results[sign_rule] = est
        if not sign_rule:
            exact = _exact_observables(obs, hi, v)
            for key in ("correlation_zz", "correlation_ss", "structure_factor_zz", "structure_factor_ss"):
                np.testing.assert_allclose(est[key], exact[key], atol=1e-10, err_msg=key)
            # the bond energy: E = 4 J * 2N <S_0 . S_nn> with 2N bonds
            nn = [tuple(d) for d in obs.tables["displacement"]].index((1, 0))
            assert np.isclose(energy, 4 * 2 * 16 * est["correlation_ss"][nn].real, atol=1e-9)
        else:
            assert np.all(np.real(v) * np.sign(np.real(v[0])) > -1e-12)  # Marshall: a positive ground state
    for key in results[False]:
        np.testing.assert_allclose(results[True][key], results[False][key], atol=1e-10, err_msg=key)
    sk = results[False]["structure_factor_ss"]
    assert np.argmax(sk.real[:-1]) == 10 and np.isclose(sk[-1], sk[10])  # peak at (pi, pi)


def test_marshall_sign_rule_on_rotated_random_states():
    """For a random RBM psi and psi' = U psi (U = prod over sublattice B of sigma^z), the
    sign-rule estimators on psi' equal the plain ones on psi (S.S, sigma^x); without the
    correction they differ (so the test sees the sign)."""
    lattice = Lattice(3, 2, False)
    ansatz, params = _rbm(6, seed=5)
    eps = ops.sublattice_signs(lattice)
    b_sites = jnp.asarray(eps < 0)

    def rotated(p, s):  # log(prod_{i in B} s_i psi(s))
        return ansatz.log_psi(p, s) + 1j * jnp.pi * jnp.sum((s < 0) & b_sites, axis=-1)

    states = jnp.asarray(nk.hilbert.Spin(0.5, 6).all_states(), jnp.float64)
    plain = ObservableSet(lattice, sx=True, correlations=True, structure_factor=True, exchange=True)
    marshall = ObservableSet(lattice, sx=True, correlations=True, structure_factor=True, exchange=True, sign_rule=True)
    a = _enumerated(plain, ansatz.log_psi, params, states)
    b = _enumerated(marshall, rotated, params, states)
    c = _enumerated(plain, rotated, params, states)
    for key in a:
        np.testing.assert_allclose(b[key], a[key], atol=1e-10, err_msg=key)
    assert np.max(np.abs(c["correlation_ss"] - a["correlation_ss"])) > 1e-3
    with pytest.raises(Exception, match="not bipartite"):
        ObservableSet(Lattice(3, 3, True), correlations=True, exchange=True, sign_rule=True)


def _cfg(**over):
    cfg = {
        "name": "obs", "seed": 3, "n_steps": 2,
        "lattice": {"kind": "square", "Lx": 3, "Ly": 2, "pbc": False},
        "hamiltonian": {"model": "heisenberg", "sign_rule": True},
        "ansatz": {"model": "rbm", "alpha": 1, "param_dtype": "complex128", "init_std": 0.3},
        "sampler": {"kind": "metropolis_exchange", "n_samples": 512, "n_chains": 8, "n_discard": 8},
        "optimizer": {"kind": "sgd", "learning_rate": 0.01, "sr": False},
        "observables": {"sx": True, "correlations": True, "structure_factor": True},
        "run": {"eval_steps": 2, "checkpoint_every": 0, "print_every": 0},
    }
    for table, values in over.items():
        cfg[table] = values if table == "hamiltonian" else {**cfg.get(table, {}), **values}
    return cfg


def test_measure_any_operator_agrees_with_enumeration_within_error_bars():
    """``measure`` (Monte Carlo, statistics per batch) of NetKet operators vs exact values."""
    from distnqs import config as config_mod
    from distnqs.problem import build_problem

    cfg = config_mod.resolve(_cfg(hamiltonian={"model": "tfim", "G": 1.0}, sampler={"kind": "metropolis_local"},
                                  observables={"correlations": False, "structure_factor": False, "sx": False}))
    problem = build_problem(cfg)
    params = problem.init_params()
    hi = problem.hamiltonian.hilbert
    sx0 = nk.operator.spin.sigmax(hi, 0)
    zz = nk.operator.spin.sigmaz(hi, 0) @ nk.operator.spin.sigmaz(hi, 4)
    got = measure(problem, params, {"H": problem.hamiltonian, "sx0": sx0, "zz": zz}, n_batches=2)
    states = jnp.asarray(hi.all_states(), jnp.float64)
    v = _vector(problem.ansatz.log_psi, params, states)
    v = v / np.linalg.norm(v)
    exact = {"H": np.vdot(v, problem.hamiltonian.to_sparse() @ v).real, "sx0": np.vdot(v, sx0.to_sparse() @ v).real,
             "zz": np.vdot(v, zz.to_sparse() @ v).real}
    for name, value in got.items():
        assert value["error"] > 0
        assert abs(value["mean"] - exact[name]) < 5 * value["error"] + 1e-12, (name, value, exact[name])
    single = measure(problem, params, sx0, n_batches=1)
    assert set(single) >= {"mean", "error"}


def test_run_writes_summary_observables_h5_and_plot(tmp_path, capsys):
    """One short in-process run (Heisenberg 3x2 open, Marshall sign): summary.json and
    observables.h5 carry the same numbers; ``distnqs plot`` draws observables.png."""
    from distnqs.io.observables import read_observables

    path = tmp_path / "obs.toml"
    path.write_text(tomli_w.dumps(_cfg()))
    out = tmp_path / "run"
    assert cli.main(["run", str(path), "--outdir", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    obs = summary["observables"]
    assert {"m", "sx", "correlations", "structure_factor"} <= set(obs)
    corr, sk = obs["correlations"], obs["structure_factor"]
    assert len(corr["distance"]) == len(corr["zz"]["mean"]) == len(corr["spin_spin"]["error"]) == 3 * 2 + 2 * 1
    assert corr["zz"]["mean"][0] == pytest.approx(1.0) and corr["spin_spin"]["mean"][0] == pytest.approx(0.75)
    assert all(e >= 0 for e in corr["spin_spin"]["error"][1:]) and max(corr["spin_spin"]["error"]) > 0
    assert len(sk["k"]) == 6 and sk["pi"]["k"] == pytest.approx([np.pi, np.pi])
    assert sk["pi"]["spin_spin"]["error"] > 0
    h5 = read_observables(out / "observables.h5")
    np.testing.assert_allclose(h5["correlations"]["spin_spin"]["mean"], corr["spin_spin"]["mean"])
    np.testing.assert_allclose(h5["structure_factor"]["pi"]["zz"]["mean"], sk["pi"]["zz"]["mean"])
    assert h5["attrs"]["eval_steps"] == 2
    capsys.readouterr()
    assert cli.main(["plot", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (out / "energy.png").exists() and (out / "observables.png").stat().st_size > 1000
    assert "observables.png" in printed


@pytest.mark.parametrize("key", ["sx", "correlations", "structure_factor"])
def test_observable_keys_are_booleans(tmp_path, capsys, key):
    cfg = _cfg(observables={key: "yes"})
    path = tmp_path / "bad.toml"
    path.write_text(tomli_w.dumps(cfg))
    capsys.readouterr()
    assert cli.main(["run", str(path), "--outdir", str(tmp_path / "o"), "--check"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert err == [f"distnqs: error: [observables] {key} must be true or false, got 'yes'"]


def test_tfim_observables_are_diagonal_only_and_cheap():
    """TFIM: no S.S pair matrix (exchange off), sigma^x from single flips."""
    from distnqs import config as config_mod
    from distnqs.observables import build_observables

    cfg = config_mod.resolve(_cfg(hamiltonian={"model": "tfim", "G": 1.0}))
    obs = build_observables(cfg, Lattice(3, 2, False))
    assert obs is not None and not obs.exchange and not obs.sign_rule
    H = tfim(Lattice(3, 2, False), G=1.0)
    assert H.hilbert.size == 6


def test_statistics_components_equal_scalar_statistics_per_component():
    """Vector observables get exactly the scalar statistics (error, tau, R-hat) of each component."""
    from distnqs.estimators.stats import combine_batches, statistics, statistics_components

    rng = np.random.default_rng(0)
    x = np.cumsum(rng.normal(size=(8, 32, 3)), axis=1) * 0.2 + rng.normal(size=(8, 32, 3))
    vec = statistics_components(jnp.asarray(x))
    for k in range(3):
        for a, b in zip(statistics(jnp.asarray(x[..., k])), vec):
            np.testing.assert_allclose(np.asarray(b)[k], np.asarray(a), rtol=1e-13)
    combined = combine_batches([vec, vec])
    np.testing.assert_allclose(combined.error_of_mean, np.asarray(vec.error_of_mean) / np.sqrt(2))
