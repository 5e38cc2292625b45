"""NAQS (Sharir et al., PRL 124, 020503): normalization, autoregressive masks,
cached vs uncached sampling, exactness of the samples, the direct sampler."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from conftest import RUN_TIME_BOUND, all_spin_configs
from distnqs.errors import ConfigError
from distnqs.models import Ansatz, build_model
from distnqs.models.naqs import NAQS
from distnqs.operators.lattice import Lattice
from distnqs.samplers import LocalRule, MetropolisSampler, build_sampler
from distnqs.samplers.direct import DirectSampler


def all_configs(n):
    return jnp.asarray(all_spin_configs(n))


# The compiled programs below are cached per (model, method, static arguments): modules are
# frozen dataclasses, equal and hashed by their fields, so a second call with other parameters, another
# seed or the same model in another test (one xdist worker runs many) reuses the compilation.
@functools.lru_cache(maxsize=None)
def _jitted_init(model):
    return jax.jit(lambda key: model.init(key, jnp.ones((1, model.Lx * model.Ly))))


def init(model, seed=0):
    """``model.init`` as one compiled program (eagerly, every operation of the network compiles on its own)."""
    return _jitted_init(model)(jax.random.PRNGKey(seed))


@functools.lru_cache(maxsize=None)
def _jitted_apply(model, method, pattern, optimized):
    def call(p, *dyn):
        it = iter(dyn)
        return model.apply(p, *[next(it) if a is None else a for a in pattern], method=method)

    return jax.jit(call, compiler_options=RUN_TIME_BOUND if optimized else None)


def japply(model, params, *args, method=None, optimized=False):
    """``model.apply(params, *args, method=method)`` as one jitted call (integer arguments static):
    one compilation instead of one per primitive in eager mode (a 3x3 network: 3 s against 13 s).
    ``optimized``: compiled with RUN_TIME_BOUND (the same numbers, faster code, slower compilation)."""
    pattern = tuple(a if isinstance(a, int) else None for a in args)
    return _jitted_apply(model, method, pattern, optimized)(params, *[a for a in args if not isinstance(a, int)])


# output_scale / phase_scale = 1: far from the uniform state, with phases, so the checks bite.
def random_model(Lx, Ly, **kw):
    kw = {"depth": 3, "features": 8, "output_scale": 1.0, "phase_scale": 1.0, **kw}
    return NAQS(Lx=Lx, Ly=Ly, **kw)


@pytest.mark.parametrize(
    "Lx, Ly, kw",
    [(3, 3, {}), (3, 3, {"kernel_size": 5, "activation": "tanh"}), (9, 1, {}), (3, 3, {"depth": 1})],
)
def test_normalized_exactly(Lx, Ly, kw):
    r""":math:`\sum_s |\psi(s)|^2 = 1` over all :math:`2^N` configurations."""
    m = random_model(Lx, Ly, **kw)
    p = init(m)
    lp = japply(m, p, all_configs(Lx * Ly))
    probs = jnp.exp(2 * lp.real)
    assert abs(float(jnp.sum(probs)) - 1.0) < 1e-10
    assert float(jnp.max(probs)) > 5.0 / 2 ** (Lx * Ly)  # far from uniform: the test is not trivial
    assert float(jnp.std(lp.imag)) > 0.1  # and has phases


def test_without_phase_psi_is_positive_and_normalized():
    r"""``phase = false``: :math:`\psi > 0` (no phase parameters at all), still :math:`\sum_s\psi^2 = 1`;
    with the Marshall sign the only phases are :math:`0, \pi`."""
    m = random_model(3, 3, phase=False)
    p = init(m)
    assert p["params"]["out_kernel"].shape == (8, 2)
    lp = japply(m, p, all_configs(9))
    assert np.all(np.asarray(lp.imag) == 0.0)
    assert abs(float(jnp.sum(jnp.exp(2 * lp.real))) - 1.0) < 1e-10
    signed = random_model(4, 2, phase=False, marshall_sign=True)
    ps = init(signed)
    lp = japply(signed, ps, all_configs(8))
    np.testing.assert_allclose(np.cos(np.asarray(lp.imag)) ** 2, 1.0, atol=1e-12)
    s = japply(signed, ps, jax.random.PRNGKey(1), 64, method=NAQS.sample_uncached)
    np.testing.assert_allclose(
        np.asarray(japply(signed, ps, s, method=NAQS.conditionals_cached)),
        np.asarray(japply(signed, ps, s, method=NAQS.conditionals)), atol=1e-12)


@pytest.mark.parametrize("Lx, Ly", [(4, 1), (2, 2), (6, 1), (4, 2)])
@pytest.mark.parametrize("marshall", [False, True])
def test_zero_magnetization_normalized_on_sz0(Lx, Ly, marshall):
    """Forbidden continuations get probability exactly 0; the Sz = 0 sector carries all the weight."""
    N = Lx * Ly
    m = random_model(Lx, Ly, zero_magnetization=True, marshall_sign=marshall)
    p = init(m)
    s = all_configs(N)
    probs = np.asarray(jnp.exp(2 * japply(m, p, s).real))
    sz0 = np.asarray(jnp.sum(s, axis=1)) == 0
    assert np.all(probs[~sz0] == 0.0)
    assert abs(probs[sz0].sum() - 1.0) < 1e-10
    assert np.all(probs[sz0] > 0)


def test_marshall_sign_changes_only_the_phase():
    r"""Marshall sign: same :math:`|\psi|`, phase shifted by :math:`\pi N^A_\uparrow` (A: x + y even)."""
    kw = {"depth": 2, "features": 6}
    plain, signed = random_model(4, 2, **kw), random_model(4, 2, marshall_sign=True, **kw)
    p = init(plain)
    s = all_configs(8)
    a, b = japply(plain, p, s), japply(signed, p, s)
    np.testing.assert_allclose(b.real, a.real, atol=1e-13)
    y, x = np.divmod(np.arange(8), 4)
    n_up_a = np.sum((np.asarray(s) > 0) & ((x + y) % 2 == 0), axis=1)
    np.testing.assert_allclose(np.exp(1j * (b.imag - a.imag)), (-1.0) ** n_up_a, atol=1e-12)


@pytest.mark.parametrize("Lx, Ly, kw", [(4, 4, {}), (5, 3, {"kernel_size": 5, "depth": 2}), (7, 1, {"depth": 6})])
def test_conditionals_see_exactly_the_earlier_sites(Lx, Ly, kw):
    r"""Row i of the conditionals ignores :math:`s_{\ge i}` and depends on every :math:`s_j, j < i` (no blind spot)."""
    N = Lx * Ly
    m = random_model(Lx, Ly, **kw)
    p = init(m, seed=1)
    s = jnp.where(jax.random.bernoulli(jax.random.PRNGKey(2), 0.5, (4, N)), 1.0, -1.0)
    conditionals = jax.jit(lambda x: m.apply(p, x, method=NAQS.conditionals))
    base = conditionals(s)
    for j in range(N):
        flipped = conditionals(s.at[:, j].multiply(-1.0))
        change = np.max(np.abs(np.asarray(flipped - base)), axis=(0, 2))  # per site i
        assert np.all(change[: j + 1] == 0.0), f"site {j} leaks into conditionals {np.nonzero(change[: j + 1])[0]}"
        assert np.all(change[j + 1 :] > 1e-10), f"conditionals {np.nonzero(change[j + 1:] <= 1e-10)[0] + j + 1} blind to site {j}"


@pytest.mark.parametrize(
    "Lx, Ly, kw",
    [
        (3, 3, {}),
        (4, 3, {"kernel_size": 5}),
        (3, 4, {"zero_magnetization": True, "marshall_sign": True}),
        (8, 1, {"zero_magnetization": True}),
        (5, 2, {"depth": 1}),
    ],
)
def test_cached_and_uncached_agree(Lx, Ly, kw):
    """The cached recursion gives the full network's conditionals, and both samplers the same samples."""
    N = Lx * Ly
    m = random_model(Lx, Ly, **kw)
    p = init(m, seed=3)
    s = japply(m, p, jax.random.PRNGKey(4), 64, method=NAQS.sample_uncached)
    full = japply(m, p, s, method=NAQS.conditionals)
    cached = japply(m, p, s, method=NAQS.conditionals_cached)
    finite = np.isfinite(np.asarray(full.real))
    assert np.array_equal(finite, np.isfinite(np.asarray(cached.real)))
    np.testing.assert_allclose(np.asarray(cached)[finite], np.asarray(full)[finite], atol=1e-12)
    key = jax.random.PRNGKey(5)
    a = japply(m, p, key, 256, method=NAQS.sample_cached)
    b = japply(m, p, key, 256, method=NAQS.sample_uncached)
    assert a.shape == (256, N)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert len({tuple(r) for r in np.asarray(a)}) > 10  # not a constant batch
    if kw.get("zero_magnetization"):
        assert np.all(np.asarray(a).sum(axis=1) == 0)


def _chi2_pvalue(samples, probs):
    """Pearson chi-square p-value of the sample histogram against ``probs`` (bins with expectation < 5 pooled)."""
    n = samples.shape[0]
    idx = np.asarray(((samples + 1) / 2).astype(int)) @ (2 ** np.arange(samples.shape[1])[::-1])
    counts = np.bincount(idx, minlength=probs.size)
    expected = n * probs
    big = expected >= 5
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    chi2 = np.sum((obs - exp) ** 2 / exp)
    return stats.chi2.sf(chi2, obs.size - 1)


@pytest.mark.parametrize("cached", [True, False])
def test_samples_follow_psi_squared(cached):
    r"""Chi-square test (fixed seed) of 40000 samples on 3x3 against the exact :math:`|\psi|^2`.

    Controls (a test that cannot fail is a defect): the same statistic rejects
    the samples with site 4 redrawn 50/50 (one wrong conditional) and the
    samples of a model with other parameters.
    """
    m = random_model(3, 3, cached=cached)
    p = init(m, seed=6)
    probs = np.asarray(jnp.exp(2 * japply(m, p, all_configs(9)).real))
    # compiled once, for `other` too, with the backend's optimizations (uncached: 7 -> 2.6 s a call, the same samples)
    samples = np.asarray(japply(m, p, jax.random.PRNGKey(7), 40000, method=NAQS.sample, optimized=True))
    assert _chi2_pvalue(samples, probs) > 1e-3
    # a sampler that gets one site's conditional wrong (here: site 4 drawn independently, 50/50) fails
    broken = samples.copy()
    broken[:, 4] = np.where(np.random.default_rng(0).random(len(broken)) < 0.5, 1.0, -1.0)
    assert _chi2_pvalue(broken, probs) < 1e-6
    # so does a sampler of other parameters
    other = np.asarray(japply(m, init(m, seed=8), jax.random.PRNGKey(7), 40000, method=NAQS.sample, optimized=True))
    assert _chi2_pvalue(other, probs) < 1e-6


def test_direct_sampler_interface():
    lattice = Lattice(3, 2, False)
    ansatz = build_model({"model": "naqs", "depth": 2, "features": 4, "output_scale": 1.0}, lattice)
    assert ansatz.is_autoregressive and ansatz.module.Lx == 3 and ansatz.module.Ly == 2
    params = jax.jit(ansatz.init)(jax.random.PRNGKey(0))  # one compiled program, not op by op
    sampler = DirectSampler(ansatz=ansatz, n_sites=6, n_samples=32)
    assert sampler.n_chains == 32 and sampler.n_samples_per_chain == 1 and not sampler.is_markov_chain
    state = sampler.init_state(ansatz.log_psi, params, jax.random.PRNGKey(1))
    run = jax.jit(lambda p, st, k: sampler.sample(ansatz.log_psi, p, st, k))
    samples, state = run(params, state, jax.random.PRNGKey(2))
    assert samples.shape == (32, 1, 6) and set(np.unique(np.asarray(samples))) <= {-1.0, 1.0}
    assert int(state.n_accepted) == int(state.n_proposed) == 32
    np.testing.assert_array_equal(np.asarray(state.sigma), np.asarray(samples[:, 0]))
    again, _ = run(params, state, jax.random.PRNGKey(2))
    np.testing.assert_array_equal(np.asarray(again), np.asarray(samples))  # a pure function of the key
    other, _ = run(params, state, jax.random.PRNGKey(3))
    assert not np.array_equal(np.asarray(other), np.asarray(samples))
    uncached = DirectSampler(ansatz=ansatz, n_sites=6, n_samples=32, cached=False)
    run_uncached = jax.jit(lambda p, st, k: uncached.sample(ansatz.log_psi, p, st, k))
    np.testing.assert_array_equal(np.asarray(run_uncached(params, state, jax.random.PRNGKey(2))[0]), np.asarray(samples))


def test_build_sampler_direct_and_errors():
    import netket as nk

    lattice = Lattice(4, 4, False)
    hilbert = nk.hilbert.Spin(0.5, 16)
    ansatz = build_model({"model": "naqs", "depth": 2, "features": 4, "cached": False}, lattice)
    sampler = build_sampler({"kind": "direct", "n_samples": 64}, lattice, hilbert, ansatz, n_ranks=2)
    assert isinstance(sampler, DirectSampler) and sampler.n_chains == 32
    assert ansatz.module.cached is False
    rbm = build_model({"model": "rbm"}, lattice)
    with pytest.raises(ConfigError):
        build_sampler({"kind": "direct"}, lattice, hilbert, rbm, n_ranks=1)
    with pytest.raises(ConfigError):
        DirectSampler(ansatz=rbm, n_sites=16, n_samples=8)
    # the Metropolis sampler accepts NAQS as any other log psi
    params = jax.jit(ansatz.init)(jax.random.PRNGKey(0))  # compiled programs, not op by op
    metro = MetropolisSampler(rule=LocalRule(), n_sites=16, n_chains=4, n_samples_per_chain=2, n_discard=1)
    st = jax.jit(lambda p, k: metro.init_state(ansatz.log_psi, p, k))(params, jax.random.PRNGKey(0))
    assert jax.jit(lambda p, st, k: metro.sample(ansatz.log_psi, p, st, k))(params, st, jax.random.PRNGKey(1))[0].shape == (4, 2, 16)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"kernel_size": 4}, "odd"),
        ({"activation": "sigmoidal"}, "activation"),
        ({"depth": 0}, "depth"),
        ({"features": -3}, "features"),
        ({"zero_magnetization": True}, "even number of sites"),
        ({"no_such_option": 1}, "no_such_option"),
    ],
)
def test_bad_options_raise_config_error(options, message):
    with pytest.raises(ConfigError, match=message):
        build_model({"model": "naqs", **options}, Lattice(3, 3, False))


def test_wrong_number_of_sites_is_a_config_error():
    ansatz = Ansatz(NAQS(Lx=3, Ly=3), 10)
    with pytest.raises(ConfigError):
        ansatz.init(jax.random.PRNGKey(0))


def test_flagship_size():
    """The paper's 21x21 network: 20 masked layers, about 1M real parameters (configs/naqs/tfim21_*.toml)."""
    from distnqs.config import load
    from distnqs.operators import build_lattice

    cfg = load("configs/naqs/tfim21_G3.0_direct.toml")
    lattice = build_lattice(cfg["lattice"])
    ansatz = build_model(cfg["ansatz"], lattice)
    shapes = jax.eval_shape(ansatz.module.init, jax.random.PRNGKey(0), jnp.ones((1, lattice.n_sites)))
    n = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(shapes))
    assert ansatz.module.depth == 20 and 0.8e6 < n < 1.2e6
