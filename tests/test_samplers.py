"""Samplers draw |psi|^2: histograms of many samples against the exact distribution (chi-square)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as sps

from distnqs.models import RBM, Ansatz
from distnqs.operators import build_lattice, heisenberg
from distnqs.samplers import ExchangeRule, GibbsRBMSampler, LocalRule, MetropolisSampler


def _index(samples):
    bits = (np.asarray(samples).reshape(-1, samples.shape[-1]) > 0).astype(np.int64)
    return bits @ (1 << np.arange(bits.shape[1])[::-1])


def _exact_probs(ansatz, params, n, magnetization=None):
    states = np.array([[1.0 if (k >> (n - 1 - i)) & 1 else -1.0 for i in range(n)] for k in range(2**n)])
    p = np.exp(2 * np.real(np.asarray(ansatz.log_psi(params, jnp.asarray(states)))))
    if magnetization is not None:
        p = p * (states.sum(1) == magnetization)
    return p / p.sum()


def _chi2_pvalue(samples, probs):
    counts = np.bincount(_index(samples), minlength=probs.size)
    expected = probs * counts.sum()
    keep = expected > 5
    chi2 = np.sum((counts[keep] - expected[keep]) ** 2 / expected[keep])
    return sps.chi2.sf(chi2, keep.sum() - 1), counts


def _draw(sampler, ansatz, params, n_calls=8):
    state = sampler.init_state(ansatz.log_psi, params, jax.random.PRNGKey(0))
    sample = jax.jit(lambda s, k: sampler.sample(ansatz.log_psi, params, s, k))
    out = []
    for t in range(n_calls):
        x, state = sample(state, jax.random.PRNGKey(100 + t))
        out.append(np.asarray(x))
    return np.concatenate(out, axis=1), state


N = 6


@pytest.fixture(scope="module")
def peaked_rbm():
    ansatz = Ansatz(RBM(alpha=1, init_std=0.6), N)
    return ansatz, ansatz.init(jax.random.PRNGKey(11))


@pytest.mark.xdist_group("samplers_peaked")  # shares a module-scoped fixture: computed once, on one worker
@pytest.mark.parametrize("fast", [False, True], ids=["forward", "lookup"])
def test_metropolis_local_samples_psi_squared(peaked_rbm, fast):
    ansatz, params = peaked_rbm
    sampler = MetropolisSampler(LocalRule(), n_sites=N, n_chains=32, n_samples_per_chain=64, n_discard=10, fast_update=ansatz.fast_update if fast else None)
    assert sampler.uses_fast_update == fast
    x, state = _draw(sampler, ansatz, params)
    p_value, _ = _chi2_pvalue(x, _exact_probs(ansatz, params, N))
    assert p_value > 1e-3
    assert 0 < int(state.n_accepted) <= int(state.n_proposed)


@pytest.mark.parametrize("fast", [False, True], ids=["forward", "lookup"])
def test_metropolis_exchange_conserves_magnetization_and_samples_the_sector(fast):
    # a smoother state than peaked_rbm, and 10 N swaps between recorded samples: swaps of
    # neighbours mix slowly on a peaked state, and the chi-square test assumes nearly
    # independent samples (it would test mixing, not correctness)
    ansatz = Ansatz(RBM(alpha=1, init_std=0.3), N)
    params = ansatz.init(jax.random.PRNGKey(11))
    lattice = build_lattice({"kind": "chain", "Lx": N, "pbc": True})
    sampler = MetropolisSampler(
        ExchangeRule(tuple(lattice.nearest_neighbour_pairs())), n_sites=N, n_chains=32, n_samples_per_chain=64, n_discard=20, sweep_size=10 * N, magnetization=0,
        fast_update=ansatz.fast_update if fast else None,
    )
    x, _ = _draw(sampler, ansatz, params)
    assert np.all(x.sum(-1) == 0)
    p_value, _ = _chi2_pvalue(x, _exact_probs(ansatz, params, N, magnetization=0))
    assert p_value > 1e-3


def test_block_gibbs_samples_psi_squared_of_a_real_rbm():
    ansatz = Ansatz(RBM(alpha=1, init_std=0.3), N)
    params = ansatz.init(jax.random.PRNGKey(11))
    sampler = GibbsRBMSampler(n_sites=N, n_chains=128, n_samples_per_chain=32, n_discard=100)
    x, _ = _draw(sampler, ansatz, params)
    p_value, _ = _chi2_pvalue(x, _exact_probs(ansatz, params, N))
    assert p_value > 1e-3


@pytest.mark.xdist_group("samplers_peaked")  # shares a module-scoped fixture: computed once, on one worker
def test_a_wrong_distribution_is_rejected_by_the_same_check(peaked_rbm):
    """The chi-square check can fail: uniform samples are far from |psi|^2."""
    ansatz, params = peaked_rbm
    x = np.where(np.asarray(jax.random.bernoulli(jax.random.PRNGKey(0), 0.5, (32, 512, N))), 1.0, -1.0)
    p_value, _ = _chi2_pvalue(x, _exact_probs(ansatz, params, N))
    assert p_value < 1e-6


def test_metropolis_with_look_up_tables_samples_a_complex_rbm():
    """Complex RBM through the look-up tables (sweeps that fall back to forward passes:
    tests/test_fast_update.py checks they give the same chain as the generic sampler)."""
    ansatz = Ansatz(RBM(alpha=2, param_dtype=jnp.complex128, init_std=0.3), N)
    params = ansatz.init(jax.random.PRNGKey(4))
    sampler = MetropolisSampler(LocalRule(), n_sites=N, n_chains=32, n_samples_per_chain=64, n_discard=10, sweep_size=2 * N, fast_update=ansatz.fast_update)
    x, _ = _draw(sampler, ansatz, params)
    p_value, _ = _chi2_pvalue(x, _exact_probs(ansatz, params, N))
    assert p_value > 1e-3


def test_chains_of_different_ranks_are_independent():
    from distnqs import comm

    assert not np.array_equal(np.asarray(comm.step_key(0, 5, 0)), np.asarray(comm.step_key(0, 5, 1)))
    assert not np.array_equal(np.asarray(comm.step_key(0, 5, 0)), np.asarray(comm.step_key(0, 6, 0)))
