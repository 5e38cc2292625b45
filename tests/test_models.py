"""Ansätze: known values, symmetries, the real view of complex parameters, NetKet models."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import netket as nk
import numpy as np
import pytest

from distnqs.errors import ConfigError
from distnqs.models import CNN, RBM, Ansatz, build_model, from_real, to_real
from distnqs.models.activations import log_cosh
from distnqs.operators import build_lattice


def test_log_cosh_is_stable_and_exact():
    x = jnp.array([-800.0, -3.0, 0.0, 2.5, 800.0])
    np.testing.assert_allclose(log_cosh(x)[1:4], np.log(np.cosh(np.array([-3.0, 0.0, 2.5]))), rtol=1e-14)
    np.testing.assert_allclose(log_cosh(x)[jnp.array([0, 4])], 800.0 - np.log(2.0), rtol=1e-14)
    z = jnp.array([0.3 + 0.7j, -1.2 - 2.0j])
    np.testing.assert_allclose(log_cosh(z), np.log(np.cosh(np.asarray(z))), rtol=1e-12)


def test_rbm_matches_its_formula():
    ansatz = Ansatz(RBM(alpha=2, param_dtype=jnp.complex128, init_std=0.2), 5)
    rp = ansatz.init(jax.random.PRNGKey(0))
    p = from_real(rp)
    s = jnp.array([[1.0, -1, 1, 1, -1], [-1.0, -1, 1, -1, 1]])
    theta = s @ p["kernel"] + p["hidden_bias"]
    expected = s @ p["visible_bias"] + jnp.sum(jnp.log(jnp.cosh(theta)), axis=1)
    np.testing.assert_allclose(ansatz.log_psi(rp, s), expected, rtol=1e-12)
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda x: not jnp.iscomplexobj(x), rp))
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda a, b: bool(jnp.all(a == b)), from_real(to_real(p)), p))


def test_cnn_is_translation_invariant_with_pbc_only():
    s = jnp.where(jax.random.bernoulli(jax.random.PRNGKey(1), 0.5, (3, 4 * 5)), 1.0, -1.0)
    shifted = jnp.roll(s.reshape(3, 5, 4), shift=(2, 1), axis=(1, 2)).reshape(3, 20)
    pbc = Ansatz(CNN(shape=(5, 4), pbc=True, features=(4, 3)), 20)
    rp = pbc.init(jax.random.PRNGKey(2))
    np.testing.assert_allclose(pbc.log_psi(rp, s), pbc.log_psi(rp, shifted), rtol=1e-12)
    obc = Ansatz(CNN(shape=(5, 4), pbc=False, features=(4, 3), init_std=0.5), 20)
    ro = obc.init(jax.random.PRNGKey(2))
    assert not np.allclose(obc.log_psi(ro, s), obc.log_psi(ro, shifted))


def test_build_model_fills_lattice_fields_and_accepts_netket_models():
    lattice = build_lattice({"Lx": 4, "Ly": 3, "pbc": True})
    cnn = build_model({"model": "cnn", "features": [2, 2]}, lattice)
    assert cnn.module.shape == (3, 4) and cnn.module.features == (2, 2)
    nk_rbm = build_model({"model": "netket.RBM", "alpha": 1, "param_dtype": "complex128"}, lattice)
    assert isinstance(nk_rbm.module, nk.models.RBM)
    rp = nk_rbm.init(jax.random.PRNGKey(0))
    assert nk_rbm.log_psi(rp, jnp.ones((2, 12))).shape == (2,)


def test_build_model_errors():
    lattice = build_lattice({"Lx": 4, "Ly": 4})
    with pytest.raises(ConfigError, match="unknown ansatz model"):
        build_model({"model": "transformer"}, lattice)
    with pytest.raises(ConfigError, match="no option 'alhpa'"):
        build_model({"model": "rbm", "alhpa": 2}, lattice)
    with pytest.raises(ConfigError, match="unknown param_dtype"):
        build_model({"model": "rbm", "param_dtype": "float16"}, lattice)
    with pytest.raises(ConfigError, match="netket.models has no"):
        build_model({"model": "netket.NoSuchNet"}, lattice)
    wrong = Ansatz(CNN(shape=(3, 3)), 16)  # a 3x3 image cannot hold 16 sites
    with pytest.raises(ConfigError, match="does not accept 16 sites"):
        wrong.init(jax.random.PRNGKey(0))


class _NeedsValues(nn.Module):
    """A network that reads a concrete parameter value while it initializes (no abstract trace)."""

    @nn.compact
    def __call__(self, s):
        w = self.param("w", nn.initializers.normal(0.1), (s.shape[-1],))
        scale = 2.0 if float(jnp.sum(w)) > 100 else 1.0  # concrete value: fails under eval_shape
        return scale * s @ w


@pytest.mark.parametrize("make", [
    lambda: Ansatz(RBM(alpha=2, param_dtype=jnp.complex128), 6),
    lambda: build_model({"model": "naqs", "depth": 2, "features": 4, "kernel_size": 3}, build_lattice({"Lx": 3, "Ly": 2, "pbc": False})),
    lambda: Ansatz(_NeedsValues(), 6),
])
def test_shapes_are_those_of_init_without_computing(make):
    ansatz = make()
    got = ansatz.shapes()
    want = ansatz.init(jax.random.PRNGKey(3))
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        assert isinstance(a, jax.ShapeDtypeStruct) and a.shape == b.shape and a.dtype == b.dtype


def test_shapes_keep_the_size_check():
    naqs = build_model({"model": "naqs", "depth": 2, "features": 4, "kernel_size": 3}, build_lattice({"Lx": 3, "Ly": 2, "pbc": False})).module
    with pytest.raises(ConfigError, match="got configurations of 5 sites") as err:
        Ansatz(naqs, 5).shapes()
    assert "\n" not in str(err.value)  # one line, as the CLI prints it
    with pytest.raises(ConfigError, match="does not accept 5 sites") as err:
        Ansatz(_WrongSize(), 5).shapes()
    assert "\n" not in str(err.value)


class _WrongSize(nn.Module):
    @nn.compact
    def __call__(self, s):
        return nn.Dense(1)(s.reshape(s.shape[0], 6))[:, 0]  # a shape error for N != 6
