"""RBM look-up tables: ratios, identical Markov chains, local energies equal to the generic path."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import netket as nk
import numpy as np
import pytest

from distnqs import config
from distnqs.models import RBM, Ansatz
from distnqs.models.rbm import RBMFastUpdate
from distnqs.operators import as_jax_operator, build_lattice, heisenberg, j1j2, local_energy, tfim
from distnqs.operators.spin_flip import SpinFlipTerms, attach, flip_terms
from distnqs.problem import build_problem
from distnqs.samplers import ExchangeRule, LocalRule, MetropolisSampler
from distnqs.samplers.rules import apply_flips

DTYPES = [jnp.float64, jnp.complex128]


def _rbm(n, dtype, std, alpha=1.5, seed=1):
    ansatz = Ansatz(RBM(alpha=alpha, param_dtype=dtype, init_std=std), n)
    return ansatz, ansatz.init(jax.random.PRNGKey(seed))


def _spins(key, batch, n):
    return jnp.where(jax.random.bernoulli(jax.random.PRNGKey(key), 0.5, (batch, n)), 1.0, -1.0)


def _apply_key(ansatz):
    """What ``ansatz.log_psi`` depends on: the module without its initialization scale, and N."""
    return ansatz.module.clone(init_std=0.0), ansatz.n_sites


@functools.lru_cache(maxsize=None)
def _flip_fn(apply_key):
    """One compiled program for everything test_flip_gives_... checks (per dtype, not per std)."""
    ansatz = Ansatz(*apply_key)
    fast = ansatz.fast_update

    @jax.jit
    def run(params, s, sites, mask):
        tables = fast.tables(params)
        dlog, lookup, reliable = fast.flip(tables, s, fast.init_lookup(tables, s), sites, mask)
        s_new = apply_flips(s, sites, mask)
        expected = ansatz.log_psi(params, s_new) - ansatz.log_psi(params, s)
        return dlog, lookup, reliable, expected, fast.init_lookup(tables, s_new)

    return run


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("std", [0.3, 0.8, 2.0])
def test_flip_gives_the_log_psi_difference_and_the_new_table(dtype, std):
    n = 10
    ansatz, params = _rbm(n, dtype, std)
    s = _spins(2, 6, n)
    sites = jnp.array([[0, 3], [1, 2], [5, 9], [4, 7], [8, 6], [2, 3]])
    mask = jnp.array([[1, 1], [1, 0], [0, 0], [0, 1], [1, 1], [1, 1]], bool)
    dlog, lookup, reliable, expected, lookup_new = _flip_fn(_apply_key(ansatz))(params, s, sites, mask)
    if not bool(reliable):  # ill-conditioned (large weights): flagged, the sampler redoes the sweep
        assert std > 0.5
        return
    np.testing.assert_allclose(np.real(dlog), np.real(expected), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.exp(1j * np.imag(dlog)), np.exp(1j * np.imag(expected)), atol=1e-12)  # modulo 2 pi
    np.testing.assert_allclose(lookup, lookup_new, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_flip_log_ratios_of_single_sites_and_bonds(dtype):
    n = 8
    ansatz, params = _rbm(n, dtype, 0.4)
    fast = ansatz.fast_update
    s = _spins(3, 5, n)
    for flips in (np.arange(n).reshape(n, 1), np.array([[i, (i + 1) % n] for i in range(n)] + [[0, 5]])):
        @jax.jit  # one program per flip list: the ratios and the forward passes they are compared with
        def ratios(p, s, flips=flips):
            tables = fast.tables(p)
            got = fast.flip_log_ratios(tables, s, fast.init_lookup(tables, s), flips)
            lp = ansatz.log_psi(p, s)
            want = jnp.stack([ansatz.log_psi(p, s.at[:, f].multiply(-1)) - lp for f in flips], axis=1)
            return got, want

        got, want = ratios(params, s)
        np.testing.assert_allclose(np.exp(got - want), 1.0, rtol=0, atol=1e-12)


_CHAIN_FNS = {}


def _chains(sampler, ansatz, params, key=5):
    """The chains of ``sampler``: one compiled program per sampler and network (shared by the
    tests and parameter draws that use the same ones), the parameters an argument."""
    cache_key = (sampler, _apply_key(ansatz), key)
    if cache_key not in _CHAIN_FNS:
        def run(p):
            state = sampler.init_state(ansatz.log_psi, p, jax.random.PRNGKey(0))
            return sampler.sample(ansatz.log_psi, p, state, jax.random.PRNGKey(key))

        _CHAIN_FNS[cache_key] = jax.jit(run)
    x, state = _CHAIN_FNS[cache_key](params)
    return np.asarray(x), int(state.n_accepted)


def _samplers(kind, n, fast_update):
    if kind == "local":
        rule, magnetization = LocalRule(), None
    else:
        rule, magnetization = ExchangeRule(tuple(build_lattice({"Lx": 4, "Ly": 3, "pbc": False}).nearest_neighbour_pairs())), 0
    kw = dict(n_sites=n, n_chains=8, n_samples_per_chain=40, n_discard=5, magnetization=magnetization)
    return MetropolisSampler(rule, **kw), MetropolisSampler(rule, fast_update=fast_update, **kw)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["local", "exchange"])
@pytest.mark.parametrize("std", [0.3, 3.0])  # 3.0: ill-conditioned tables, sweeps redone with forward passes
def test_fast_and_generic_metropolis_make_the_same_chain(dtype, kind, std):
    n = 12
    ansatz, params = _rbm(n, dtype, std)
    generic, fast = _samplers(kind, n, ansatz.fast_update)
    assert fast.uses_fast_update and not generic.uses_fast_update
    x_generic, acc_generic = _chains(generic, ansatz, params)
    x_fast, acc_fast = _chains(fast, ansatz, params)
    assert 0 < acc_generic < 8 * 45 * n
    np.testing.assert_array_equal(x_fast, x_generic)
    assert acc_fast == acc_generic


@dataclasses.dataclass(frozen=True)
class _WrongSignUpdate(RBMFastUpdate):
    """A subtly wrong table: the visible-bias term with the wrong sign."""

    def flip(self, tables, s, lookup, sites, mask):
        return super().flip(tables._replace(visible_bias=-tables.visible_bias), s, lookup, sites, mask)


def test_the_chain_comparison_detects_a_wrong_update():
    n = 12
    ansatz, params = _rbm(n, jnp.float64, 0.3)
    generic, wrong = _samplers("local", n, _WrongSignUpdate())
    assert not np.array_equal(_chains(wrong, ansatz, params)[0], _chains(generic, ansatz, params)[0])


HAMILTONIANS = [
    ("tfim-2d", lambda: tfim(build_lattice({"Lx": 3, "Ly": 3, "pbc": True}), G=1.3, J=0.7)),
    ("tfim-2d-open", lambda: tfim(build_lattice({"Lx": 4, "Ly": 3, "pbc": False}), G=3.0)),
    ("tfim-chain", lambda: tfim(build_lattice({"kind": "chain", "Lx": 10, "pbc": False}), G=0.4)),
    ("heisenberg", lambda: heisenberg(build_lattice({"kind": "chain", "Lx": 8, "pbc": True}), J=1.3)),
    ("heisenberg-sign-sz0", lambda: heisenberg(build_lattice({"Lx": 4, "Ly": 2, "pbc": False}), sign_rule=True, total_sz=0)),
    ("heisenberg-sz0", lambda: heisenberg(build_lattice({"kind": "chain", "Lx": 10, "pbc": True}), total_sz=0)),
    ("j1j2-sign", lambda: j1j2(build_lattice({"Lx": 4, "Ly": 2, "pbc": False}), J2=0.5, sign_rule=True)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,build", HAMILTONIANS)
def test_fast_local_energies_equal_the_generic_ones(name, build, dtype):
    H = build()
    assert flip_terms(H) is not None
    n = H.hilbert.size
    states = jnp.asarray(H.hilbert.all_states(), dtype=jnp.float64)
    ansatz = _rbm(n, dtype, 0.3)[0]  # one compiled program per path, for both parameter draws
    generic_fn = jax.jit(lambda p, x: local_energy(ansatz.log_psi, p, H, x))
    fast_fn = jax.jit(lambda p, x: local_energy(ansatz.log_psi, p, H, x, fast_update=ansatz.fast_update))
    chunked_fn = jax.jit(lambda p, x: local_energy(ansatz.log_psi, p, H, x, chunk_size=37, fast_update=ansatz.fast_update))
    for std in (0.3, 2.5):  # 2.5: many ill-conditioned factors, computed from the angles instead
        params = _rbm(n, dtype, std)[1]
        generic = np.asarray(generic_fn(params, states))
        fast = np.asarray(fast_fn(params, states))
        np.testing.assert_allclose(fast, generic, rtol=1e-12, atol=1e-12)
        chunked = np.asarray(chunked_fn(params, states))
        np.testing.assert_allclose(chunked, generic, rtol=1e-12, atol=1e-12)


def test_only_operators_built_here_are_recognized():
    lattice = build_lattice({"kind": "chain", "Lx": 6, "pbc": True})
    hi = nk.hilbert.Spin(0.5, 6)
    ising = as_jax_operator(nk.operator.IsingJax(hi, lattice.graph(), h=0.8, J=-1.0))  # the same TFIM, not built by distnqs
    assert flip_terms(ising) is None
    ansatz, params = _rbm(6, jnp.float64, 0.3)
    states = jnp.asarray(hi.all_states(), dtype=jnp.float64)
    ours = tfim(lattice, G=0.8)
    both = jax.jit(lambda p, x: (local_energy(ansatz.log_psi, p, ising, x, fast_update=ansatz.fast_update),
                                 local_energy(ansatz.log_psi, p, ours, x, fast_update=ansatz.fast_update)))
    np.testing.assert_allclose(*both(params, states), rtol=1e-12)  # the generic path is taken, with the same result
    flips = np.arange(6).reshape(6, 1)
    wrong = SpinFlipTerms(np.array(lattice.nearest_neighbour_pairs()), np.full(6, -1.0), flips, np.full(6, -0.7), False)
    with pytest.raises(AssertionError, match="disagrees"):
        attach(ising, wrong)


def _problem(fast_update, model="tfim"):
    ham = {"model": "tfim", "G": 2.0} if model == "tfim" else {"model": "heisenberg", "sign_rule": True, "total_sz": 0}
    kind = "metropolis_local" if model == "tfim" else "metropolis_exchange"
    return build_problem(config.resolve({
        "seed": 3,
        "n_steps": 5,
        "lattice": {"Lx": 3, "Ly": 4, "pbc": False},
        "hamiltonian": ham,
        "ansatz": {"model": "rbm", "alpha": 1, "init_std": 0.1},
        "sampler": {"kind": kind, "n_samples": 64, "n_chains": 8, "n_discard": 4},
        "optimizer": {"kind": "sgd", "learning_rate": 0.05, "sr": True, "diag_shift": 0.01},
        "run": {"reference": False, "fast_update": fast_update},
    }))


@pytest.mark.parametrize("model", ["tfim", "heisenberg"])
def test_a_vmc_step_is_the_same_with_and_without_look_up_tables(model):
    results = []
    for fast in (True, False):
        problem = _problem(fast, model)
        assert problem.sampler.uses_fast_update == fast and (problem.step.fast_update is not None) == fast
        params, opt_state, sampler_state = problem.init_state()
        step = problem.step.jit()
        for t in range(3):
            params, opt_state, sampler_state, metrics = step(params, opt_state, sampler_state, jnp.asarray(t, jnp.int32))
        results.append((params, sampler_state.sigma, metrics["energy"].mean))
    (p_fast, s_fast, e_fast), (p_gen, s_gen, e_gen) = results
    np.testing.assert_array_equal(s_fast, s_gen)
    assert float(e_fast) == pytest.approx(float(e_gen), rel=1e-11)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10), p_fast, p_gen)


def test_fast_update_option_is_checked():
    with pytest.raises(config.ConfigError, match="fast_update"):
        config.resolve({"lattice": {"Lx": 3}, "hamiltonian": {"model": "tfim", "G": 1.0}, "run": {"fast_update": "yes"}})


@pytest.mark.parametrize("visible,hidden", [(False, True), (True, False)])
def test_rbm_without_biases(visible, hidden):
    n = 8
    ansatz = Ansatz(RBM(alpha=1, use_visible_bias=visible, use_hidden_bias=hidden, init_std=0.3), n)
    params = ansatz.init(jax.random.PRNGKey(2))
    H = tfim(build_lattice({"kind": "chain", "Lx": n, "pbc": True}), G=1.0)
    states = jnp.asarray(H.hilbert.all_states(), dtype=jnp.float64)
    both = jax.jit(lambda p, x: (local_energy(ansatz.log_psi, p, H, x, fast_update=ansatz.fast_update),
                                 local_energy(ansatz.log_psi, p, H, x)))
    np.testing.assert_allclose(*both(params, states), rtol=1e-12, atol=1e-12)
    generic, fast = _samplers("local", n, ansatz.fast_update)
    np.testing.assert_array_equal(_chains(fast, ansatz, params)[0], _chains(generic, ansatz, params)[0])
