"""Wolff Monte Carlo and exact results for the classical 2D Ising model H = -sum_<ij> s_i s_j (periodic, k_B = 1).

References: exact enumeration (3x3, 4x4), the row transfer matrix, and the exact
8x8 values in the package data distnqs/data/literature.json (key "classical_ising_8x8_pbc").
"""

from collections import deque

import numpy as np
import pytest

import distnqs  # noqa: F401  (float64 before jax)
import jax

from conftest import literature

from distnqs.generative.ising.exact import enumerate_configs, exact_enumeration, exact_transfer_matrix
from distnqs.generative.ising.wolff import (
    bond_probability,
    bond_threshold,
    energy_per_site,
    magnetization,
    replica_mean_and_error,
    run_wolff,
    wolff_flip_jit,
)

N_SIGMA = 4.0


def _literature() -> dict:
    return literature()["classical_ising_8x8_pbc"]


# --------------------------------------------------------------------------- observables

def _energy_loop(s):
    L1, L2 = s.shape
    tot = 0
    for r in range(L1):
        for c in range(L2):
            tot += s[r, c] * s[r, (c + 1) % L2] + s[r, c] * s[(r + 1) % L1, c]
    return -tot / (L1 * L2)


def test_energy_and_magnetization_against_explicit_bond_sum():
    rng = np.random.default_rng(0)
    s = rng.choice(np.array([-1, 1], np.int8), size=(20, 5, 6))
    np.testing.assert_allclose(energy_per_site(s), [_energy_loop(x) for x in s], rtol=0, atol=1e-14)
    np.testing.assert_allclose(magnetization(s), s.reshape(20, -1).mean(axis=1), atol=1e-14)
    up = np.ones((8, 8), np.int8)
    checker = np.where(np.add.outer(np.arange(8), np.arange(8)) % 2 == 0, 1, -1).astype(np.int8)
    assert energy_per_site(up) == -2.0 and magnetization(up) == 1.0
    assert energy_per_site(checker) == 2.0 and magnetization(checker) == 0.0
    with pytest.raises(ValueError):
        energy_per_site(np.ones((2, 2)))


def test_replica_mean_and_error():
    v = np.array([[1.0, 3.0], [1.0, 3.0], [1.0, 3.0]])  # replica means 1 and 3
    mean, err = replica_mean_and_error(v)
    assert mean == 2.0 and err == pytest.approx(np.std([1.0, 3.0], ddof=1) / np.sqrt(2))


def test_bond_threshold_is_the_wolff_probability():
    for T in (1.5, 2.269, 3.5):
        p = 1.0 - np.exp(-2.0 / T)
        assert bond_probability(T) == pytest.approx(p, rel=1e-15)
        assert abs(int(bond_threshold(T)) / 2.0**32 - p) <= 2.0**-32


# --------------------------------------------------------------------------- exact results

@pytest.mark.parametrize("L", [3, 4])
@pytest.mark.parametrize("T", [1.5, 2.269, 3.5])
def test_enumeration_agrees_with_transfer_matrix(L, T):
    a, b = exact_enumeration(L, T), exact_transfer_matrix(L, T)
    for key in ("E_per_site", "C_per_site", "abs_m", "m2"):
        assert getattr(a, key) == pytest.approx(getattr(b, key), rel=1e-10, abs=1e-12), key
    np.testing.assert_allclose(a.m_probs, b.m_probs, atol=1e-12)
    assert a.e_probs.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(a.m_probs, a.m_probs[::-1], atol=1e-15)  # Z2 symmetry


def test_enumeration_limits():
    configs = enumerate_configs(3)
    assert configs.shape == (512, 3, 3) and len({c.tobytes() for c in configs}) == 512
    cold, hot = exact_enumeration(4, 0.05), exact_enumeration(4, 1e6)
    assert cold.E_per_site == pytest.approx(-2.0, abs=1e-12) and cold.abs_m == pytest.approx(1.0, abs=1e-12)
    assert hot.E_per_site == pytest.approx(0.0, abs=1e-5) and hot.m2 == pytest.approx(1 / 16, rel=1e-4)


def test_transfer_matrix_8x8_matches_literature():
    ref = _literature()
    for T, vals in ((2.269, ref["at_T_2.269"]), (ref["T_c_infinite"], ref["at_T_c"])):
        r = exact_transfer_matrix(8, T)
        assert r.E_per_site == pytest.approx(vals["E_per_site"], abs=2e-7)
        assert r.abs_m == pytest.approx(vals["abs_m"], abs=2e-7)
        assert r.m2 == pytest.approx(vals["m2"], abs=2e-7)
        assert r.C_per_site == pytest.approx(vals["C_per_site"], abs=1e-5)


# --------------------------------------------------------------------------- Wolff dynamics

def _component(s, seed):
    """Same-spin connected component of site ``seed`` on the periodic lattice (BFS)."""
    L = s.shape[0]
    todo, seen = deque([seed]), {seed}
    while todo:
        r, c = todo.popleft()
        for nr, nc in ((r, (c + 1) % L), (r, (c - 1) % L), ((r + 1) % L, c), ((r - 1) % L, c)):
            if (nr, nc) not in seen and s[nr, nc] == s[r, c]:
                seen.add((nr, nc))
                todo.append((nr, nc))
    return seen


def test_wolff_flip_grows_exactly_the_same_spin_domain_at_p_1():
    """With every satisfied bond active the cluster is the seed's same-spin domain (periodic wrap included)."""
    rng = np.random.default_rng(1)
    s = rng.choice(np.array([-1, 1], np.int8), size=(64, 6, 6))
    thr = np.uint32(2**32 - 1)
    new, size = wolff_flip_jit(jax.numpy.asarray(s), jax.random.PRNGKey(3), thr)
    new, size = np.asarray(new), np.asarray(size)
    for old, nw, n in zip(s, new, size):
        flipped = {tuple(x) for x in np.argwhere(old != nw)}
        assert len(flipped) == n
        seed = next(iter(flipped))
        assert flipped == _component(old, seed)


def test_wolff_flip_single_spin_at_infinite_temperature():
    s = jax.numpy.ones((64, 6, 6), jax.numpy.int8)  # same shapes as above: one compilation
    new, size = wolff_flip_jit(s, jax.random.PRNGKey(0), np.uint32(0))
    assert np.all(np.asarray(size) == 1)
    assert np.all((np.asarray(new) == -1).sum(axis=(1, 2)) == 1)


def _check_against_exact(res, exact, tag):
    e, m = energy_per_site(res.spins), magnetization(res.spins)
    for name, values, target in (("E_per_site", e, exact.E_per_site), ("abs_m", np.abs(m), exact.abs_m),
                                 ("m2", m**2, exact.m2)):
        mean, err = replica_mean_and_error(values)
        assert err > 0
        assert abs(mean - target) < N_SIGMA * err, f"{tag} {name}: {mean} +- {err} vs exact {target}"
    return e


@pytest.mark.parametrize("L,T", [(3, 1.8), (4, 2.269)])
def test_wolff_matches_exact_enumeration(L, T):
    exact = exact_enumeration(L, T)
    res = run_wolff(jax.random.PRNGKey(11), L, T, n_configs=40000, n_replicas=200)
    e = _check_against_exact(res, exact, f"{L}x{L} T={T}")
    # the full energy distribution, bin by bin (replica error bars)
    assert abs(replica_mean_and_error(e)[1]) < 0.01
    N = L * L
    e_total = np.round(e * N).astype(int)
    for value, prob in zip(np.round(exact.e_values * N).astype(int), exact.e_probs):
        if prob < 1e-3:
            continue
        freq, err = replica_mean_and_error((e_total == value).astype(float))
        assert abs(freq - prob) < N_SIGMA * err + 1e-3, f"P(E={value}) = {freq} +- {err}, exact {prob}"


def test_wolff_8x8_at_2269_matches_literature():
    ref = _literature()["at_T_2.269"]
    res = run_wolff(jax.random.PRNGKey(5), 8, 2.269, n_configs=100000, n_replicas=500)
    e, m = energy_per_site(res.spins), magnetization(res.spins)
    for name, values in (("E_per_site", e), ("abs_m", np.abs(m)), ("m2", m**2)):
        mean, err = replica_mean_and_error(values)
        assert 0 < err < 3e-3, (name, err)
        assert abs(mean - ref[name]) < N_SIGMA * err, f"{name}: {mean} +- {err} vs exact {ref[name]}"
    # the measured cluster size is the Wolff estimator of N <m^2> (improved estimator identity)
    assert res.mean_cluster_size == pytest.approx(64 * ref["m2"], rel=0.03)
    assert res.configs.shape == (100000, 8, 8) and res.configs.dtype == np.int8
