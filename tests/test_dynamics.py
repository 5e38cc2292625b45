"""t-VMC (distnqs.dynamics): the TDVP velocity against the exact projected dynamics, integrator
orders, and real- and imaginary-time evolutions against exact ones (all by full enumeration or
with tolerances from error bars, the integrator's order and the TDVP residual)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from distnqs.dynamics.tdvp import TDVP
from distnqs.models import Ansatz, RBM
from distnqs.operators import as_jax_operator, build_lattice, tfim
from distnqs.operators.local_energy import local_energy


def _tiny(G=1.0, seed=3):
    lattice = build_lattice({"kind": "chain", "L": 4, "pbc": True})
    ham = as_jax_operator(tfim(lattice, G))
    ansatz = Ansatz(RBM(alpha=0.5, param_dtype=jnp.complex128, init_std=0.3), 4)
    params = ansatz.init(jax.random.PRNGKey(seed))
    states = jnp.asarray(np.asarray(ham.hilbert.all_states(), dtype=np.float64))
    return ham, ansatz, params, states


def _projected_velocity(ham, ansatz, params, states, imaginary):
    r"""McLachlan's min_x |sum_k x_k P d_k psi + i P H psi| (or + P H psi) by dense least squares on psi vectors."""
    flat, unravel = ravel_pytree(params)

    def psi_of(p):
        lp = ansatz.log_psi(unravel(p), states)
        return jnp.exp(lp)

    @jax.jit  # one compiled program, not op by op
    def psi_and_jacobians(p):
        return psi_of(p), jax.jacfwd(lambda q: psi_of(q).real)(p), jax.jacfwd(lambda q: psi_of(q).imag)(p)

    psi, jac_re, jac_im = (np.asarray(a) for a in psi_and_jacobians(flat))
    jac = jac_re + 1j * jac_im
    norm = np.linalg.norm(psi)
    psi_n, V = psi / norm, jac / norm
    V = V - np.outer(psi_n, psi_n.conj() @ V)  # tangent vectors orthogonal to psi
    H = ham.to_sparse().toarray()
    hpsi = H @ psi_n
    e = np.vdot(psi_n, hpsi).real
    target = -(hpsi - e * psi_n) if imaginary else -1j * (hpsi - e * psi_n)
    A = np.concatenate([V.real, V.imag])
    b = np.concatenate([target.real, target.imag])
    x, *_ = np.linalg.lstsq(A, b, rcond=1e-10)
    residual2 = np.linalg.norm(A @ x - b) ** 2 / np.linalg.norm(b) ** 2
    return x, residual2, e


@pytest.mark.parametrize("imaginary", [False, True])
def test_tdvp_velocity_matches_exact_projected_dynamics(imaginary):
    """Full enumeration (weights |psi|^2/Z): the S/F solve equals the least-squares projection of
    -iH psi (or -(H-E) psi) onto the tangent space, for every regularization with vanishing strength."""
    ham, ansatz, params, states = _tiny()
    x_ref, r2_ref, e_ref = _projected_velocity(ham, ansatz, params, states, imaginary)
    @jax.jit  # one compiled program, not op by op
    def weights_and_local_energies(p):
        lp = ansatz.log_psi(p, states)
        w = jnp.exp(2 * lp.real - jnp.max(2 * lp.real))
        return w / jnp.sum(w), local_energy(ansatz.log_psi, p, ham, states, lp)

    w, e_loc = weights_and_local_energies(params)
    solvers = {
        "pinv": TDVP(imaginary=imaginary, regularization="snr", snr_cutoff=0.0, rcond=1e-12, rcond_smooth=0.0),
        "dense": TDVP(imaginary=imaginary, diag_shift=1e-12, solver="dense"),
        "cg": TDVP(imaginary=imaginary, diag_shift=1e-12, solver="cg", cg_tol=1e-14, cg_maxiter=2000),
    }
    scale = np.linalg.norm(x_ref)
    assert scale > 1e-2  # a generic state moves
    for name, tdvp in solvers.items():
        x, info = jax.jit(lambda p, t=tdvp: t.velocity(ansatz.log_psi, p, states, w, e_loc, jnp.inf))(params)
        x = np.asarray(ravel_pytree(x)[0])
        assert np.linalg.norm(x - x_ref) <= 1e-6 * scale, (name, np.linalg.norm(x - x_ref) / scale)
        assert abs(float(info["energy"].real) - e_ref) < 1e-10
        assert abs(float(info["residual"]) - r2_ref) < 1e-6, (name, float(info["residual"]), r2_ref)


# ---------------------------------------------------------------------------
# Whole evolutions against exact ones (3x3 periodic TFIM at G = 1, quench from all +x)
# ---------------------------------------------------------------------------

QUENCH = {
    "seed": 11,
    "lattice": {"kind": "square", "Lx": 3, "Ly": 3, "pbc": True},
    "hamiltonian": {"model": "tfim", "G": 1.0},
    "ansatz": {"model": "rbm", "alpha": 2, "param_dtype": "complex128"},
    "sampler": {"n_samples": 2048, "n_chains": 16, "n_discard": 8},
    "run": {"print_every": 1000, "eval_steps": 2, "checkpoint_every": 0},
    "dynamics": {"t_final": 0.3, "dt": 0.05, "integrator": "rk4", "diag_shift": 1e-5},
}
DT_ENUMERATION = 0.025  # the deterministic run: rk4 error O(dt^4) well below the bounds below



def _evolve(tmp_path, name, lattice=None, **dynamics):
    import copy
    import json

    from distnqs.dynamics.evolve import evolve
    from distnqs.io.log import read_log

    cfg = copy.deepcopy(QUENCH)
    cfg["dynamics"].update(dynamics)
    if lattice is not None:
        cfg["lattice"] = lattice
    out = tmp_path / name
    summary, code = evolve(cfg, out, quiet=True)
    assert code == 0
    return summary, read_log(out / "log.h5"), json.loads((out / "exact.json").read_text())


def _deviation_bound(log, dt, energy=False):
    r"""Upper bounds from the TDVP residual, at each logged time and the final one (integrals by the
    upper, max-of-ends, rectangle rule). The projected velocity differs from -i(H - E)psi by a vector
    of norm sqrt(r^2 Var E) (McLachlan), and unitary evolution does not amplify distances, so
    |<A>_TDVP - <A>_exact| <= 2 int_0^t sqrt(r^2 Var E) for |A| <= 1; and
    |dE/dt| = |2 Re <(H - E)psi|rho>| <= 2 Var E sqrt(r^2) (``energy``)."""
    r = np.sqrt(np.maximum(log["tdvp_residual"], 0))
    rate = 2 * r * (log["energy_variance"] if energy else np.sqrt(log["energy_variance"]))
    upper = np.maximum(rate, np.append(rate[1:], rate[-1]))
    return np.concatenate([[0.0], np.cumsum(upper * dt)])


@pytest.fixture(scope="session")  # see conftest: built once per worker, never rebuilt
def enumerated_quench(tmp_path_factory):
    return _evolve(tmp_path_factory.mktemp("quench"), "enum", sampling="full_enumeration", dt=DT_ENUMERATION)


@pytest.mark.xdist_group("dynamics_enumerated")  # shares a session-scoped fixture: computed once, on one worker
def test_quench_full_enumeration_follows_exact_within_the_tdvp_bound(enumerated_quench):
    """Deterministic (full enumeration), up to t = 0.3: the residual bound plus 1e-4 for rk4's
    truncation (global error ~ t |H dt|^4 |H| / 5!  per site, < 1e-4 at dt = 0.025)."""
    summary, log, exact = enumerated_quench
    bound = _deviation_bound(log, DT_ENUMERATION) + 1e-4
    assert bound[-1] < 0.05  # the comparison says something: the ansatz follows the quench up to t = 0.3
    sx = np.append(log["sx"], summary["observables"]["sx"]["mean"])
    zz = np.append(log["szsz"], summary["observables"]["szsz"]["mean"])
    assert np.all(np.abs(sx - np.asarray(exact["sx"])) <= bound)
    assert np.all(np.abs(zz - np.asarray(exact["szsz"])) <= bound)
    assert exact["sx"][-1] < 0.5  # a real quench: <sx> fell from 1 to 0.47 by t = 0.3
    # energy: E(0) = -G N = -9 exactly (all +x); conserved up to the residual bound
    e = np.append(log["energy_mean"], summary["observables"]["energy"]["mean"])
    assert np.all(np.abs(e + 9.0) <= _deviation_bound(log, DT_ENUMERATION, energy=True) + 1e-4)


def test_chain_quench_full_enumeration_follows_exact_within_the_tdvp_bound(tmp_path):
    """The 12-site periodic chain, all +x quenched to the critical G = 1, up to t = 0.3 (deterministic,
    full enumeration of 4096 configurations): same bounds as on 3x3; E(0) = -G N = -12."""
    summary, log, exact = _evolve(tmp_path, "chain", lattice={"kind": "chain", "Lx": 12, "pbc": True},
                                  sampling="full_enumeration", dt=DT_ENUMERATION)
    bound = _deviation_bound(log, DT_ENUMERATION) + 1e-4
    assert bound[-1] < 0.05
    for col in ("sx", "szsz"):
        y = np.append(log[col], summary["observables"][col]["mean"])
        assert np.all(np.abs(y - np.asarray(exact[col])) <= bound), (col, y, exact[col], bound)
    assert exact["sx"][-1] < 0.8  # <sx> moved away from 1
    e = np.append(log["energy_mean"], summary["observables"]["energy"]["mean"])
    assert np.all(np.abs(e + 12.0) <= _deviation_bound(log, DT_ENUMERATION, energy=True) + 1e-4)


@pytest.mark.xdist_group("dynamics_enumerated")  # shares a session-scoped fixture: computed once, on one worker
def test_quench_monte_carlo_agrees_with_exact_within_error_bars(tmp_path, enumerated_quench):
    """2048 Metropolis samples per evaluation: <sx>, <szsz> at every logged time within 5 sigma (the
    statistical error of that time's estimate, inflated by sqrt(2) for the noise the trajectory itself
    carries) plus the deterministic TDVP bound of the same ansatz; energy conserved within 5 sigma."""
    summary, log, exact = _evolve(tmp_path, "mc")
    _, enum_log, enum_exact = enumerated_quench
    times = np.asarray(exact["t"])
    bound = np.interp(times, enum_exact["t"], _deviation_bound(enum_log, DT_ENUMERATION)) + 1e-4
    e_bound = np.interp(times, enum_exact["t"], _deviation_bound(enum_log, DT_ENUMERATION, energy=True)) + 1e-4
    for col in ("sx", "szsz"):
        y = np.append(log[col], summary["observables"][col]["mean"])
        err = np.append(log[f"{col}_error"], summary["observables"][col]["error"])
        assert np.all(err[1:] > 0)
        dev = np.abs(y - np.asarray(exact[col]))
        assert np.all(dev <= 5 * np.sqrt(2) * err + bound), (col, dev, err, bound)
    e = np.append(log["energy_mean"], summary["observables"]["energy"]["mean"])
    e_err = np.append(log["energy_error"], summary["observables"]["energy"]["error"])
    assert np.all(np.abs(e + 9.0) <= 5 * np.sqrt(2) * e_err + e_bound)


def test_imaginary_time_reaches_the_ground_state(tmp_path):
    """Imaginary time (full enumeration, adaptive rk23 with S-metric error control: the flow from +x
    is stiff at first, tau = 2): E(tau) never increases (the imaginary-time flow decreases E; 1e-6
    for the integrator), and ends within 1e-3 (relative) of the exact-diagonalization ground state
    plus the exact imaginary-time evolution's own distance to it at tau = 2."""
    from distnqs.operators import build_lattice
    from distnqs.operators.exact import ground_state_energy

    summary, log, exact = _evolve(tmp_path, "imag", sampling="full_enumeration", imaginary=True, t_final=2.0, dt=0.1,
                                integrator="rk23", rk23_tol=1e-3)
    e = np.append(log["energy_mean"], summary["observables"]["energy"]["mean"])
    assert np.all(np.diff(e) <= 1e-6), np.diff(e)
    assert summary["rejected_substeps"] >= 0 and summary["accepted_substeps"] > 20  # the control adapted
    e0 = ground_state_energy(tfim(build_lattice(QUENCH["lattice"]), 1.0))
    exact_gap = exact["energy"][-1] - e0  # exact imaginary time is not at the ground state yet either
    assert exact_gap >= 0
    assert e[-1] - e0 <= exact_gap + 1e-3 * abs(e0), (e[-1], e0, exact_gap)


def test_integrators_converge_with_their_order():
    """Deterministic TDVP flow (full enumeration, 4-site chain): halving dt divides the error at
    t = 0.4 by 2^p, p = 1 (euler), 2 (heun), 4 (rk4), against rk4 with dt/8 as the reference."""
    from distnqs.dynamics.evolve import EvolveStep, plus_x_params
    from distnqs.dynamics.integrators import TABLEAUS, axpy_tree, rk_stages

    ham, _, _, states = _tiny()
    ansatz = Ansatz(RBM(alpha=1, param_dtype=jnp.complex128), 4)
    params0 = plus_x_params(ansatz, ansatz.init(jax.random.PRNGKey(0)), 0.5)
    step = EvolveStep(ansatz=ansatz, hamiltonian=ham, sampler=None, tdvp=TDVP(diag_shift=1e-2), integrator="rk4", dt=0.1,
                      seed=0, pairs=((0, 1), (1, 2), (2, 3), (3, 0)), enumeration=states, enumeration_valid=jnp.ones(16))

    @functools.cache  # one compiled step per integrator (rk4 serves the reference and its own check)
    def make(name):
        tab = TABLEAUS[name]

        @jax.jit
        def advance(y, h):
            def f(y, carry, i):
                return step.rhs(y, None, None)[0], carry
            ks, _ = rk_stages(f, y, h, None, tab)
            return axpy_tree(y, h, tab.b, ks)

        def solve(dt, t_final=0.4):
            y = params0
            for _ in range(int(round(t_final / dt))):
                y = advance(y, jnp.asarray(dt))
            return np.asarray(ravel_pytree(y)[0])

        return solve

    reference = make("rk4")(0.0125)
    for name, order, dt in (("euler", 1, 0.02), ("heun", 2, 0.05), ("rk4", 4, 0.1)):
        solve = make(name)
        e1, e2 = (np.linalg.norm(solve(h) - reference) for h in (dt, dt / 2))
        p = np.log2(e1 / e2)
        assert abs(p - order) < 0.35, (name, p, e1, e2)
