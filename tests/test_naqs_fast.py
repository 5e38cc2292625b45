"""NAQS local energies from the cached layers (distnqs.models.naqs_fast) against forward passes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from distnqs.models import Ansatz
from distnqs.models import naqs_fast
from distnqs.models.naqs import NAQS
from distnqs.operators import build_lattice, heisenberg, local_energy, tfim
from distnqs.operators.local_energy import local_values
from distnqs.operators.spin_flip import flip_terms
from distnqs.samplers import LocalRule, MetropolisSampler


def _model(Lx, Ly, depth, kernel_size=3, **kw):
    module = NAQS(Lx=Lx, Ly=Ly, depth=depth, features=4, kernel_size=kernel_size, output_scale=1.0, phase_scale=0.7, **kw)
    ansatz = Ansatz(module, Lx * Ly)
    # init as one compiled program: eagerly, every operation of the network compiles on its own
    return module, ansatz, jax.jit(ansatz.init)(jax.random.PRNGKey(3))


def _spins(n_sites, batch=5, balanced=False, seed=0):
    rng = np.random.default_rng(seed)
    if balanced:
        return jnp.asarray([rng.permutation([1.0, -1.0] * (n_sites // 2)) for _ in range(batch)])
    return jnp.asarray(rng.choice([-1.0, 1.0], (batch, n_sites)))


def _bonds(Lx, Ly):
    """Nearest-neighbour bonds, some listed (j, i) with j > i, as a Hamiltonian may."""
    out = []
    for y in range(Ly):
        for x in range(Lx):
            i = y * Lx + x
            if x + 1 < Lx:
                out.append((i, i + 1))
            if y + 1 < Ly:
                out.append((i + Lx, i) if x % 2 else (i, i + Lx))
    return np.asarray(out)


def _brute_force(ansatz, params, s, flips):
    r""":math:`\log\psi(s^{(F_k)}) - \log\psi(s)` by forward passes of every flipped configuration."""
    mask = np.zeros((len(flips), s.shape[1]), bool)
    for k, f in enumerate(flips):
        mask[k, f] = True
    flipped = jnp.where(jnp.asarray(mask)[None], -s[:, None, :], s[:, None, :]).reshape(-1, s.shape[1])

    @jax.jit
    def ratios(p):
        return ansatz.log_psi(p, flipped).reshape(s.shape[0], len(flips)) - ansatz.log_psi(p, s)[:, None]

    return ratios(params)


def _fast(ansatz, params, s, flips):
    fast = ansatz.fast_update
    return jax.jit(lambda p, x: fast.flip_log_ratios(fast.tables(p), x, x, flips))(params, s)


def _assert_same_ratios(fast, ref):
    """Same psi(s')/psi(s) (phases modulo 2 pi), and zero exactly where the brute force gives zero."""
    fast, ref = np.asarray(fast), np.asarray(ref)
    zero = ~np.isfinite(ref.real)
    np.testing.assert_array_equal(~np.isfinite(fast.real), zero)
    np.testing.assert_allclose(np.exp(fast[~zero]), np.exp(ref[~zero]), rtol=1e-10, atol=0)


CASES = [
    # Lx, Ly, depth, kernel, options, flip sets
    (4, 3, 3, 3, {}, "sites"),
    (6, 5, 2, 5, {}, "sites"),
    (7, 6, 1, 3, {}, "sites"),
    (9, 1, 3, 3, {}, "sites"),
    (5, 4, 3, 3, {"marshall_sign": True}, "bonds"),
    (4, 4, 2, 3, {"marshall_sign": True, "zero_magnetization": True}, "bonds"),
    (6, 4, 3, 3, {"zero_magnetization": True}, "bonds"),
    (8, 1, 2, 3, {"zero_magnetization": True}, "bonds"),
]


@pytest.mark.parametrize("Lx, Ly, depth, kernel, options, kind", CASES)
def test_flip_log_ratios_equal_forward_passes(Lx, Ly, depth, kernel, options, kind):
    _, ansatz, params = _model(Lx, Ly, depth, kernel, **options)
    flips = np.arange(Lx * Ly)[:, None] if kind == "sites" else _bonds(Lx, Ly)
    s = _spins(Lx * Ly, balanced=options.get("zero_magnetization", False))
    _assert_same_ratios(_fast(ansatz, params, s, flips), _brute_force(ansatz, params, s, flips))


def test_flips_out_of_the_zero_magnetization_sector_have_zero_amplitude():
    _, ansatz, params = _model(4, 4, 2, zero_magnetization=True)
    flips = np.arange(16)[:, None]  # single flips leave S^z = 0: psi(s') = 0 exactly
    s = _spins(16, balanced=True)
    fast = np.asarray(_fast(ansatz, params, s, flips))
    assert np.all(np.isneginf(fast.real))
    _assert_same_ratios(fast, _brute_force(ansatz, params, s, flips))


def test_a_cone_one_row_too_short_is_detected(monkeypatch):
    """The comparison above fails if the recomputed boxes miss a changed row."""
    true_geometry = naqs_fast.cone_geometry

    def short(*args):
        g = true_geometry(*args)
        cut = lambda boxes: tuple((b[0], b[1] - 1, b[2], b[3]) for b in boxes)  # noqa: E731
        return naqs_fast.ConeGeometry(g.pattern, cut(g.v_boxes), cut(g.h_boxes))

    monkeypatch.setattr(naqs_fast, "cone_geometry", short)
    naqs_fast._cached_plan.cache_clear()
    try:
        _, ansatz, params = _model(5, 4, 2)
        flips = np.arange(20)[:, None]
        s = _spins(20)
        with pytest.raises(AssertionError):
            _assert_same_ratios(_fast(ansatz, params, s, flips), _brute_force(ansatz, params, s, flips))
    finally:
        naqs_fast._cached_plan.cache_clear()


def test_cone_of_one_flip_by_hand():
    """K = 3: v^0 changes on rows 1-2, columns -1..1 below the flip, each layer adds one row and
    one column either side; h^l also covers the rest of the flip's row (l + 2 columns)."""
    g = naqs_fast.cone_geometry(((0, 0),), 3, 3, one_d=False)
    assert g.v_boxes == ((1, 2, -1, 1), (1, 3, -2, 2), (1, 4, -3, 3))
    assert g.h_boxes[:2] == ((0, 2, -1, 2), (0, 3, -2, 3))
    assert g.h_boxes[2] == (0, 4, -3, 4)


@pytest.mark.parametrize("model", ["tfim", "heisenberg"])
def test_local_energies_equal_the_generic_path(model):
    lattice = build_lattice({"kind": "square", "Lx": 8, "Ly": 6, "pbc": False})
    if model == "tfim":
        ham, options = tfim(lattice, G=2.5), {}
    else:
        ham, options = heisenberg(lattice, sign_rule=True, total_sz=0), {"marshall_sign": True, "zero_magnetization": True}
    _, ansatz, params = _model(8, 6, 2, **options)
    assert ansatz.fast_update.usable(flip_terms(ham).flips)
    s = _spins(48, batch=7, balanced=model == "heisenberg")
    # one compiled program per path, not op by op (eagerly: one compilation per primitive)
    fast = jax.jit(lambda p, x: local_energy(ansatz.log_psi, p, ham, x, chunk_size=3, fast_update=ansatz.fast_update))(params, s)
    ref = jax.jit(lambda p, x: local_values(ansatz.log_psi, p, ham, x))(params, s)
    np.testing.assert_allclose(np.asarray(fast), np.asarray(ref), rtol=1e-10, atol=1e-10)


def test_deep_networks_on_small_lattices_take_the_generic_path():
    """When the cones cover the lattice there is nothing to save: ``usable`` is False."""
    _, deep, _ = _model(4, 4, 4)
    _, shallow, _ = _model(10, 10, 3)
    assert not deep.fast_update.usable(np.arange(16)[:, None])
    assert shallow.fast_update.usable(np.arange(100)[:, None])


def test_metropolis_on_naqs_uses_forward_passes():
    _, ansatz, _ = _model(4, 4, 2)
    sampler = MetropolisSampler(LocalRule(), 16, 4, 8, fast_update=ansatz.fast_update)
    assert not sampler.uses_fast_update
