"""Operator layer: Hamiltonian builders against exact references, NetKet operators, local energies."""

import jax
import jax.numpy as jnp
import netket as nk
import numpy as np
import pytest

from conftest import exact_reference
from distnqs.errors import ConfigError
from distnqs.models import CNN, RBM, Ansatz
from distnqs.operators import (
    as_jax_operator,
    build_hamiltonian,
    build_lattice,
    ground_state_energy,
    heisenberg,
    j1j2,
    local_energy,
    tfim,
)


@pytest.mark.parametrize(
    "model,Lx,Ly,pbc,G",
    [("tfim", 4, 4, True, 3.0), ("tfim", 4, 4, False, 2.0), ("tfim", 16, 1, True, 1.0), ("heisenberg", 4, 4, False, None)],
)
def test_builders_reproduce_exact_ground_state_energies(model, Lx, Ly, pbc, G):
    ref = exact_reference(model, Lx, Ly, pbc, G)
    lattice = build_lattice({"kind": "chain" if Ly == 1 else "square", "Lx": Lx, "Ly": Ly, "pbc": pbc})
    cfg = {"model": model, "G": G} if model == "tfim" else {"model": model, "total_sz": 0}
    e0 = ground_state_energy(build_hamiltonian(cfg, lattice))
    assert e0 == pytest.approx(ref["E_total"], rel=1e-10)


def test_marshall_sign_rule_keeps_the_spectrum():
    lattice = build_lattice({"Lx": 4, "Ly": 4, "pbc": True})
    ref = exact_reference("heisenberg", 4, 4, True)
    assert ground_state_energy(heisenberg(lattice, sign_rule=True, total_sz=0)) == pytest.approx(ref["E_total"], rel=1e-10)


def test_site_order_is_row_major_x_fastest():
    lattice = build_lattice({"Lx": 3, "Ly": 2, "pbc": False})
    pairs = set(lattice.nearest_neighbour_pairs())
    # (x, y) -> y * Lx + x: horizontal bonds (0,1),(1,2),(3,4),(4,5); vertical (0,3),(1,4),(2,5)
    assert pairs == {(0, 1), (1, 2), (3, 4), (4, 5), (0, 3), (1, 4), (2, 5)}


def _dense_local_energy(H, psi):
    psi = np.asarray(psi)
    # sparse: NetKet's to_dense() of a jax operator took 5-45 s here for 2^10 states, to_sparse() 0.5-4 s
    return (H.to_sparse() @ psi) / psi


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.complex128])
@pytest.mark.parametrize(
    "name,build",
    [
        ("tfim-2d", lambda: tfim(build_lattice({"Lx": 3, "Ly": 3, "pbc": True}), G=1.3, J=0.7)),
        ("tfim-chain-open", lambda: tfim(build_lattice({"kind": "chain", "Lx": 10, "pbc": False}), G=0.4)),
        ("heisenberg", lambda: heisenberg(build_lattice({"kind": "chain", "Lx": 8, "pbc": True}))),
        ("heisenberg-sz0", lambda: heisenberg(build_lattice({"kind": "chain", "Lx": 10, "pbc": True}), total_sz=0)),
        ("j1j2", lambda: j1j2(build_lattice({"Lx": 3, "Ly": 3, "pbc": True}), J2=0.5)),
    ],
)
def test_local_energy_equals_dense_H_psi_over_psi(name, build, dtype):
    H = build()
    n = H.hilbert.size
    ansatz = Ansatz(RBM(alpha=1, param_dtype=dtype, init_std=0.3), n)
    params = ansatz.init(jax.random.PRNGKey(7))
    states = jnp.asarray(H.hilbert.all_states(), dtype=jnp.float64)

    @jax.jit  # one compiled program for psi and the three local-energy paths, not op by op
    def compute(p, x):
        return (jnp.exp(ansatz.log_psi(p, x)), local_energy(ansatz.log_psi, p, H, x),
                local_energy(ansatz.log_psi, p, H, x, chunk_size=37),
                local_energy(ansatz.log_psi, p, H, x, chunk_size=x.shape[0]))  # the last: one batch

    psi, got, chunked, whole = (np.asarray(a) for a in compute(params, states))
    expected = _dense_local_energy(H, psi)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(chunked, got, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(whole, got, rtol=1e-12, atol=1e-12)


def test_automatic_chunks_on_cpu():
    """No chunk size given: on CPU about AUTO_CHUNK_CONFIGS connected configurations per chunk
    (at least one sample); a given size is kept."""
    from distnqs.operators.local_energy import AUTO_CHUNK_CONFIGS, auto_chunk_size

    assert jax.default_backend() == "cpu"
    assert auto_chunk_size(25) == AUTO_CHUNK_CONFIGS // 25 >= 1
    assert auto_chunk_size(10 * AUTO_CHUNK_CONFIGS) == 1
    assert auto_chunk_size(25, 7) == 7


def test_any_netket_jax_operator_is_accepted():
    """A PauliStrings operator equal to the TFIM gives the same local energies."""
    lattice = build_lattice({"kind": "chain", "Lx": 6, "pbc": True})
    hi = nk.hilbert.Spin(0.5, 6)
    strings, weights = [], []
    for i in range(6):
        zz = ["I"] * 6
        zz[i] = zz[(i + 1) % 6] = "Z"
        strings.append("".join(zz))
        weights.append(-1.0)
        x = ["I"] * 6
        x[i] = "X"
        strings.append("".join(x))
        weights.append(-0.8)
    pauli = as_jax_operator(nk.operator.PauliStrings(hi, strings, weights))
    assert isinstance(pauli, nk.operator.DiscreteJaxOperator)
    ours = tfim(lattice, G=0.8)
    ansatz = Ansatz(CNN(shape=(1, 6), pbc=True, features=(3,)), 6)
    params = ansatz.init(jax.random.PRNGKey(3))
    states = jnp.asarray(hi.all_states(), dtype=jnp.float64)
    both = jax.jit(lambda p, x: (local_energy(ansatz.log_psi, p, pauli, x), local_energy(ansatz.log_psi, p, ours, x)))
    np.testing.assert_allclose(*(np.asarray(a) for a in both(params, states)), rtol=1e-10, atol=1e-10)


def test_bad_hamiltonian_and_lattice_configs():
    lattice = build_lattice({"Lx": 4, "Ly": 4})
    with pytest.raises(ConfigError, match="unknown hamiltonian model"):
        build_hamiltonian({"model": "hubbard"}, lattice)
    with pytest.raises(ConfigError, match="needs G"):
        build_hamiltonian({"model": "tfim"}, lattice)
    with pytest.raises(ConfigError, match="no option"):
        build_hamiltonian({"model": "tfim", "G": 1.0, "h": 2.0}, lattice)
    with pytest.raises(ConfigError, match="positive integer"):
        build_lattice({"Lx": 0, "Ly": 4})
    with pytest.raises(ConfigError, match="unknown lattice kind"):
        build_lattice({"kind": "kagome", "Lx": 4})
    with pytest.raises(ConfigError, match="even number"):
        build_hamiltonian({"model": "heisenberg", "total_sz": 0}, build_lattice({"kind": "chain", "Lx": 5, "pbc": True}))
