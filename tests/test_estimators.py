"""Estimators: statistics, gradient and S matrix against exact (full-enumeration) values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from distnqs.estimators import energy_gradient, qgt_dense, qgt_matvec, statistics
from distnqs.estimators.qgt import centered_jacobian
from distnqs.models import RBM, Ansatz
from distnqs.operators import build_lattice, heisenberg, local_energy, tfim
from distnqs.optim.sr import SR

jit_statistics = jax.jit(statistics)  # one compiled program per shape, not op by op


def test_statistics_of_independent_samples():
    x = jax.random.normal(jax.random.PRNGKey(0), (64, 256)) * 2.0 + 1.0
    s = jit_statistics(x)
    assert float(s.mean) == pytest.approx(float(jnp.mean(x)), rel=1e-12)
    assert float(s.variance) == pytest.approx(float(jnp.var(x)), rel=1e-12)
    assert float(s.tau_corr) < 0.3
    assert float(s.error_of_mean) == pytest.approx(2.0 / np.sqrt(x.size), rel=0.15)
    assert abs(float(s.R_hat) - 1.0) < 0.02


def test_autocorrelation_time_of_an_ar1_process():
    """x_t = phi x_{t-1} + noise has tau_int = (1 + phi) / (2 (1 - phi))."""
    phi, n_chains, n = 0.8, 64, 2000
    noise = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (n_chains, n)))
    x = np.zeros_like(noise)
    x[:, 0] = noise[:, 0] / np.sqrt(1 - phi**2)
    for t in range(1, n):
        x[:, t] = phi * x[:, t - 1] + noise[:, t]
    s = jit_statistics(jnp.asarray(x))
    tau_int = (1 + phi) / (2 * (1 - phi))
    assert float(s.tau_corr) == pytest.approx(tau_int - 0.5, rel=0.15)
    true_error = np.sqrt(2 * tau_int / (1 - phi**2) / x.size)
    assert float(s.error_of_mean) == pytest.approx(true_error, rel=0.15)


def test_split_rhat_detects_chains_that_disagree():
    x = jax.random.normal(jax.random.PRNGKey(2), (16, 200)) + jnp.arange(16)[:, None] * 0.5
    assert float(jit_statistics(x).R_hat) > 1.5


def _exact_setup(H, dtype=jnp.float64, seed=1):
    n = H.hilbert.size
    ansatz = Ansatz(RBM(alpha=1, param_dtype=dtype, init_std=0.3), n)
    params = ansatz.init(jax.random.PRNGKey(seed))
    states = jnp.asarray(H.hilbert.all_states(), dtype=jnp.float64)

    @jax.jit  # compiled once, not op by op
    def probabilities(p, x):
        lp = ansatz.log_psi(p, x)
        prob = jnp.exp(2 * lp.real)
        return prob / prob.sum()

    return ansatz, params, states, probabilities(params, states)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.complex128])
@pytest.mark.parametrize("which", ["tfim", "heisenberg-sz0"])
def test_energy_gradient_equals_derivative_of_the_exact_energy(which, dtype):
    lattice = build_lattice({"kind": "chain", "Lx": 6, "pbc": True})
    H = tfim(lattice, G=0.9) if which == "tfim" else heisenberg(lattice, total_sz=0)
    ansatz, params, states, prob = _exact_setup(H, dtype)
    Hd = jnp.asarray(H.to_dense())

    def exact_energy(p):
        psi = jnp.exp(ansatz.log_psi(p, states))
        return jnp.real(jnp.vdot(psi, Hd @ psi) / jnp.vdot(psi, psi))

    expected = jax.jit(jax.grad(exact_energy))(params)

    @jax.jit  # one compiled program, not op by op
    def estimate(p):
        e_loc = local_energy(ansatz.log_psi, p, H, states)
        E = jnp.sum(prob * e_loc)
        n = states.shape[0]
        # Weighted enumeration through the unweighted estimator: with
        # e'_i = E + n p_i (e_i - E),  (2/n) Re sum O_i (e'_i - E)^* = 2 Re sum p_i O_i (e_i - E)^*.
        return energy_gradient(ansatz.log_psi, p, states, E + n * prob * (e_loc - E), E, n, chunk_size=7)

    got = estimate(params)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.complex128])
def test_qgt_matvec_dense_and_definition_agree(dtype):
    H = tfim(build_lattice({"kind": "chain", "Lx": 5, "pbc": True}), G=1.0)
    ansatz, params, _, _ = _exact_setup(H, dtype)
    samples = jnp.where(jax.random.bernoulli(jax.random.PRNGKey(4), 0.5, (50, 5)), 1.0, -1.0)
    n = samples.shape[0]
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    v = jax.random.normal(jax.random.PRNGKey(5), flat.shape)

    @jax.jit  # the three estimators as one compiled program, not op by op
    def estimate(p, x, v):
        S = qgt_dense(ansatz.log_psi, p, x, n)
        Sv = jax.flatten_util.ravel_pytree(qgt_matvec(ansatz.log_psi, p, x, unravel(v), n, chunk_size=16))[0]
        return S, centered_jacobian(ansatz.log_psi, p, x, n), Sv

    S, (jr, ji), Sv = estimate(params, samples, v)
    # definition: S_kl = Re <conj(dO_k) dO_l> with complex O = O_re + i O_im
    O = jr + 1j * ji
    np.testing.assert_allclose(S, np.real(O.conj().T @ O) / n, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(Sv, S @ v, rtol=1e-9, atol=1e-13)


def test_sr_cg_and_dense_solve_the_same_system():
    H = tfim(build_lattice({"kind": "chain", "Lx": 6, "pbc": True}), G=1.0)
    ansatz, params, _, _ = _exact_setup(H)
    samples = jnp.where(jax.random.bernoulli(jax.random.PRNGKey(6), 0.5, (200, 6)), 1.0, -1.0)
    grad = jax.tree_util.tree_map(lambda x: jnp.ones_like(x) * 0.1, params)
    cg, dense = SR(diag_shift=0.01, solver="cg", cg_tol=1e-14, cg_maxiter=2000), SR(diag_shift=0.01, solver="dense")
    solve = jax.jit(lambda p, x, g: (cg.solve(ansatz.log_psi, p, x, g, 200), dense.solve(ansatz.log_psi, p, x, g, 200)))
    x_cg, x_dense = solve(params, samples, grad)
    for a, b in zip(jax.tree_util.tree_leaves(x_cg), jax.tree_util.tree_leaves(x_dense)):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)
