"""Tests of distnqs.generative.tomography: POVM algebra, exact data, CVAE, CLI.

Exact references: brute-force Kronecker-product density matrices, the
reference file tests/data/exact_small.json (16-site open TFIM chain),
NetKet's Lanczos, and the ED solver itself for the MPS/DMRG path.
"""

from __future__ import annotations

import json
from functools import reduce
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

import distnqs  # noqa: F401  (float64 on)
from distnqs.generative.tomography import cvae, data, observables
from conftest import exact_small, literature
from distnqs.generative.tomography.povm import PAULI, product_estimator, tetrahedral_povm

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def povm():
    return tetrahedral_povm()


def _random_density_matrix(n_qubits, rng, rank=None):
    dim = 2**n_qubits
    rank = rank or dim
    g = rng.normal(size=(dim, rank)) + 1j * rng.normal(size=(dim, rank))
    rho = g @ g.conj().T
    return rho / np.trace(rho)


def _kron(*ops):
    return reduce(np.kron, ops)


def _exact_outcome_table(rho, povm, n_qubits):
    """p(a) = Tr(rho M_a0 x ... ) by brute force, shape (4,)*n."""
    p = np.empty((4,) * n_qubits)
    for a in np.ndindex(*p.shape):
        p[a] = np.real(np.trace(rho @ _kron(*[povm.elements[k] for k in a])))
    return p


def _all_outcomes(n):
    return np.array(list(np.ndindex(*(4,) * n)))


def _chisquare_pvalue(counts, expected, min_expected=5.0):
    """Pearson chi-square p-value with bins of small expected count pooled."""
    small = expected < min_expected
    obs = np.append(counts[~small], counts[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    return scipy.stats.chisquare(obs, exp * obs.sum() / exp.sum()).pvalue


# ----------------------------------------------------------------------------- POVM


def test_povm_completeness_overlap_and_dual_frame(povm):
    vectors = literature()["tetrahedral_povm"]["s"]
    np.testing.assert_allclose(povm.vectors, vectors)
    np.testing.assert_allclose(povm.elements.sum(axis=0), np.eye(2), atol=1e-12)  # sum_a M_a = 1
    for a in range(4):
        assert np.all(np.linalg.eigvalsh(povm.elements[a]) > -1e-12)
        np.testing.assert_allclose(povm.kraus[a].conj()[:, None] * povm.kraus[a][None, :], povm.elements[a], atol=1e-12)
    # T_ab = Tr(M_a M_b) = (1 + s_a.s_b)/8 and Tr(Q_a Q_b) = (T^-1)_ab
    s = np.asarray(vectors)
    np.testing.assert_allclose(povm.overlap, (1 + s @ s.T) / 8, atol=1e-12)
    np.testing.assert_allclose(np.einsum("aij,bji->ab", povm.duals, povm.duals).real, povm.overlap_inv, atol=1e-10)
    # reconstruction rho = sum_a Tr(rho M_a) Q_a for random states
    rng = np.random.default_rng(0)
    for _ in range(5):
        rho = _random_density_matrix(1, rng)
        p = np.einsum("ij,aji->a", rho, povm.elements).real
        np.testing.assert_allclose(np.einsum("a,aij->ij", p, povm.duals), rho, atol=1e-12)


@pytest.mark.parametrize("rank", [1, None])
def test_estimators_unbiased_on_random_states(povm, rank):
    """Exact mean of the product estimator over the exact outcome distribution = Tr(rho O)."""
    rng = np.random.default_rng(1 if rank else 2)
    n = 3
    rho = _random_density_matrix(n, rng, rank)
    p = _exact_outcome_table(rho, povm, n).ravel()
    np.testing.assert_allclose(p.sum(), 1.0, atol=1e-12)
    outcomes = _all_outcomes(n)
    cases = [{0: "X"}, {1: "Y"}, {2: "Z"}, {0: "Z", 2: "Z"}, {0: "X", 1: "X"}, {0: "Y", 1: "Z", 2: "X"}]
    for ops in cases:
        full = _kron(*[PAULI[ops.get(i, "I")] for i in range(n)])
        exact = np.real(np.trace(rho @ full))
        mean = np.dot(p, product_estimator(povm, outcomes, ops))
        assert abs(mean - exact) < 1e-12, ops
    # mu_z^2 estimator [(sum z)^2 - sum z^2 + N]/N^2 is unbiased for <(sum sz)^2>/N^2
    zsum = sum(_kron(*[PAULI["Z"] if i == j else PAULI["I"] for i in range(n)]) for j in range(n))
    zh = povm.estimator("Z")[outcomes]
    m2 = np.dot(p, (zh.sum(1) ** 2 - (zh**2).sum(1) + n) / n**2)
    assert abs(m2 - np.real(np.trace(rho @ zsum @ zsum)) / n**2) < 1e-12
    # purity kernel: sum_{a,a'} p_A(a) p_A(a') prod (T^-1)_{a_i a'_i} = Tr rho_A^2 (A = first two qubits)
    p_a = p.reshape(4, 4, 4).sum(axis=2).ravel()
    kernel = np.kron(povm.overlap_inv, povm.overlap_inv)
    rho_a = np.einsum("ikjk->ij", rho.reshape(4, 2, 4, 2))
    assert abs(p_a @ kernel @ p_a - np.real(np.trace(rho_a @ rho_a))) < 1e-12


def test_renyi_u_statistic_equals_pair_average(povm):
    """The histogram formula is exactly the average over distinct ordered sample pairs."""
    rng = np.random.default_rng(3)
    samples = rng.integers(0, 4, size=(150, 4))
    block = 3
    kern = np.prod(povm.overlap_inv[samples[:, None, :block], samples[None, :, :block]], axis=2)
    brute = (kern.sum() - np.trace(kern)) / (150 * 149)
    got = observables.renyi2_from_samples(samples, povm, block)["purity"]
    assert abs(got - brute) < 1e-12


# ----------------------------------------------------------------------------- exact states and sampling


def test_ed_matches_reference_values():
    ref = next(e for e in exact_small()
               if e["model"] == "tfim" and e["Ly"] == 1 and not e["pbc"])
    energy, psi = data.ground_state_ed(ref["N"], ref["G"])
    assert abs(energy - ref["E_total"]) < 1e-9
    obs = observables.exact_from_statevector(psi)
    assert abs(obs["mu_z"] ** 2 - ref["mz2_per_site2"]) < 1e-9
    assert abs(obs["mu_x"] - ref["mx_per_site"]) < 1e-9


def test_ed_matches_netket_lanczos():
    import netket as nk

    n, h = 8, 0.7
    ham = nk.operator.Ising(nk.hilbert.Spin(0.5, N=n), nk.graph.Chain(n, pbc=False), h=h, J=-1.0)
    energy, psi = data.ground_state_ed(n, h)
    assert abs(energy - nk.exact.lanczos_ed(ham, k=1)[0]) < 1e-9
    # the even-sector state is an eigenvector of the full Hamiltonian too
    x = np.array([[0, 1], [1, 0]])
    z = np.diag([1.0, -1.0])
    full = sum(-_kron(*[z if k in (i, i + 1) else np.eye(2) for k in range(n)]) for i in range(n - 1))
    full = full + sum(-h * _kron(*[x if k == i else np.eye(2) for k in range(n)]) for i in range(n))
    np.testing.assert_allclose(full @ psi, energy * psi, atol=1e-9)


@pytest.mark.parametrize("table_sites", [4, 2, 0])
def test_statevector_sampling_matches_exact_distribution(povm, table_sites):
    _, psi = data.ground_state_ed(4, 0.9)
    p = data.povm_distribution(psi, povm)
    rho = np.outer(psi, psi.conj())
    np.testing.assert_allclose(p, _exact_outcome_table(rho, povm, 4).ravel(), atol=1e-12)
    samples = data.sample_statevector(psi, povm, 60000, np.random.default_rng(10 + table_sites), table_sites=table_sites)
    counts = np.bincount(np.ravel_multi_index(samples.T.astype(int), (4,) * 4), minlength=256)
    assert _chisquare_pvalue(counts, p * samples.shape[0]) > 1e-3
    # a sampler drawing from a slightly wrong distribution is rejected by the same test
    wrong = data.sample_from_table(0.9 * p + 0.1 / 256, 4, 60000, np.random.default_rng(99))
    counts = np.bincount(np.ravel_multi_index(wrong.T.astype(int), (4,) * 4), minlength=256)
    assert _chisquare_pvalue(counts, p * wrong.shape[0]) < 1e-6


@pytest.mark.parametrize("h", [0.3, 1.1])
def test_dmrg_mps_matches_ed_and_mps_sampling_matches_statevector(povm, h):
    n = 6
    energy, psi = data.ground_state_ed(n, h)
    energy_mps, tensors, _ = data.ground_state_mps(n, h, bond_dim=25)
    assert abs(energy - energy_mps) < 1e-9
    for b in tensors:  # right-canonical
        np.testing.assert_allclose(np.einsum("lsr,msr->lm", b, b.conj()), np.eye(b.shape[0]), atol=1e-10)
    assert abs(abs(np.vdot(psi, data.mps_to_statevector(tensors))) - 1) < 1e-9
    exact_sv, exact_mps = observables.exact_from_statevector(psi), observables.exact_from_mps(tensors)
    for key in exact_sv:
        np.testing.assert_allclose(exact_mps[key], exact_sv[key], atol=1e-9, err_msg=key)
    m = 40000
    s_mps = data.sample_mps(tensors, povm, m, np.random.default_rng(5))
    s_sv = data.sample_statevector(psi, povm, m, np.random.default_rng(6), table_sites=0)
    # two-sample chi-square on the outcome of the first three sites (64 bins)
    bins = [np.bincount(np.ravel_multi_index(s[:, :3].T.astype(int), (4,) * 3), minlength=64) for s in (s_mps, s_sv)]
    assert scipy.stats.chi2_contingency(np.array(bins)).pvalue > 1e-3
    # and MPS samples against the exact distribution of all six sites
    p = data.povm_distribution(psi, povm)
    counts = np.bincount(np.ravel_multi_index(s_mps.T.astype(int), (4,) * n), minlength=4**n)
    assert _chisquare_pvalue(counts, p * m) > 1e-3


def test_sample_estimates_agree_with_exact_observables(povm):
    n = 6
    _, tensors, _ = data.ground_state_mps(n, 0.9, bond_dim=25)
    exact = observables.exact_from_mps(tensors)
    est = observables.estimate_from_samples(data.sample_mps(tensors, povm, 100000, np.random.default_rng(7)), povm)
    for key in observables.OBSERVABLE_KEYS:
        err = np.maximum(est[f"{key}_err"], 1e-12)
        z = np.abs(est[key] - exact[key]) / err
        assert np.all((z < 5) | (err < 1e-11)), (key, z)
    # Renyi-2 of a 2-site block from the same kind of samples
    ren = observables.renyi2_from_samples(data.sample_mps(tensors, povm, 200000, np.random.default_rng(8)), povm, 2)
    assert abs(ren["S2"] - exact["renyi2"][1]) < 5 * ren["S2_err"]
    assert ren["S2_err"] < 0.05


def test_dataset_hdf5_roundtrip(tmp_path, povm):
    ds = data.generate_dataset(3, np.array([0.5, 1.0]), 50, povm, seed=4, method="ed")
    data.save_dataset(tmp_path / "d.h5", ds)
    back = data.load_dataset(tmp_path / "d.h5")
    assert back.n_sites == 3 and back.method == "ed" and back.seed == 4
    np.testing.assert_array_equal(back.outcomes, ds.outcomes)
    np.testing.assert_array_equal(back.fields, ds.fields)
    np.testing.assert_allclose(back.states, ds.states)
    for key in ds.exact:
        np.testing.assert_allclose(back.exact[key], ds.exact[key])
    # same seed, same data
    again = data.generate_dataset(3, np.array([0.5, 1.0]), 50, povm, seed=4, method="ed")
    np.testing.assert_array_equal(again.outcomes, ds.outcomes)


# ----------------------------------------------------------------------------- CVAE


def test_short_training_reaches_fidelity_at_critical_field(povm):
    import jax

    fields = np.array([0.7, 0.9, 1.1])
    ds = data.generate_dataset(5, fields, 20000, povm, seed=11, method="ed")
    model = cvae.make_model(5, hidden=(128, 128))
    config = cvae.TrainConfig(steps=2000, batch_size=512, learning_rate=3e-3, kl_warmup=50, seed=0, chunk=250)
    params, history = cvae.train(model, ds.outcomes, ds.fields, config)
    neg_elbo = [e["kl"] - e["rec"] for e in history]
    assert neg_elbo[-1] < neg_elbo[0] - 0.1
    p_exact = data.povm_distribution(ds.states[1], povm)
    p_vae = cvae.outcome_distribution(model, params, 0.9, jax.random.key(3), n_latent=32768)
    fidelity = observables.bhattacharyya(p_exact, p_vae)
    assert fidelity > 0.97, fidelity
    # the generated samples follow the model distribution (chi-square against the MC table)
    samples = cvae.sample(model, params, 0.9, 20000, jax.random.key(4))
    counts = np.bincount(np.ravel_multi_index(samples.T.astype(int), (4,) * 5), minlength=4**5)
    assert _chisquare_pvalue(counts, p_vae * 20000) > 1e-4


@pytest.mark.parametrize("decoder", ["factorized", "autoregressive"])
def test_gumbel_softmax_derivative_matches_finite_differences(povm, decoder):
    import jax
    import jax.numpy as jnp

    model = cvae.make_model(5, hidden=(32, 32), dtype="float64", decoder=decoder)
    params = cvae.init_params(model, jax.random.key(0))
    tables = jnp.asarray(np.stack([povm.estimator("X"), povm.estimator("Z")]))
    z = jax.random.normal(jax.random.key(1), (4000, model.latent_dim))
    g = jax.random.gumbel(jax.random.key(2), (4000, 5, 4))
    for h in (0.3, 0.9, 1.6):
        h = jnp.asarray(h, model.dtype)  # as cvae.susceptibility passes it: the same compiled programs serve both
        grad = cvae.relaxed_susceptibility(model, params, h, z, g, tables, 0.5)
        step = 1e-5
        fd = (cvae.relaxed_magnetizations(model, params, h + step, z, g, tables, 0.5)
              - cvae.relaxed_magnetizations(model, params, h - step, z, g, tables, 0.5)) / (2 * step)
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9)
        assert np.all(np.abs(grad) > 1e-4)  # the decoder does depend on h
    # the wrapper returns the same derivative and a hard-sample value near the relaxed one at small tau
    res = cvae.susceptibility(model, params, 0.9, jax.random.key(5), povm.estimator("X"), povm.estimator("Z"),
                              n_samples=4000, temperature=0.5, fd_step=1e-5)
    np.testing.assert_allclose(res["gumbel"], res["fd_relaxed"], rtol=1e-6, atol=1e-9)


def _all_outcomes_teacher_forced_log_probs(model):
    """``(params, z, h) -> ln p(a|z,h)`` for all 4^N outcomes a at one (z, h), by teacher forcing:
    one compiled program for ``model`` (traced afresh on every call of this function, so a
    monkeypatched mask is seen)."""
    import jax
    import jax.numpy as jnp

    outcomes = _all_outcomes(model.n_sites)
    m = outcomes.shape[0]

    @jax.jit
    def log_probs(params, z, h):
        onehot = jax.nn.one_hot(outcomes, 4, dtype=model.dtype)
        lp = cvae.decode(model, params, jnp.tile(z, (m, 1)), jnp.full((m,), h), onehot)
        return jnp.sum(onehot * lp, axis=(1, 2))

    return lambda params, z, h: np.asarray(log_probs(params, z, h))


def test_autoregressive_decoder_is_causal_and_exactly_normalized(povm, monkeypatch):
    import jax
    import jax.numpy as jnp

    n = 3
    model = cvae.make_model(n, hidden=(16, 16), dtype="float64", decoder="autoregressive")
    params = cvae.init_params(model, jax.random.key(0))
    # causality: the logits of site i depend on x at sites < i only, and do depend on them
    z = jax.random.normal(jax.random.key(1), (1, model.latent_dim))
    x = jax.nn.one_hot(jnp.array([[1, 3, 2]]), 4, dtype=jnp.float64)
    jac = np.asarray(jax.jit(jax.jacfwd(lambda xx: cvae.decode(model, params, z, jnp.array([0.8]), xx)))(x))[0, :, :, 0]  # (N,K,N,K)
    for i in range(n):
        for j in range(n):
            block = np.abs(jac[i, :, j, :]).max()
            assert (block == 0.0) if j >= i else (block > 1e-6), (i, j, block)
    # sum_a prod_i pi_i(a_i|a_<i,z,h) = 1 exactly for every (z, h)
    teacher_forced = _all_outcomes_teacher_forced_log_probs(model)
    for seed, h in ((2, 0.0), (3, 0.9), (4, 2.0)):
        zs = 2.0 * jax.random.normal(jax.random.key(seed), (model.latent_dim,))
        assert abs(np.exp(teacher_forced(params, zs, h)).sum() - 1) < 1e-12
    # model table (prior MC over z, one pass per prefix) is normalized, and the sequential sampler follows it
    p_model = cvae.outcome_distribution(model, params, 0.9, jax.random.key(5), n_latent=32768)
    assert abs(p_model.sum() - 1) < 1e-12
    samples = cvae.sample(model, params, 0.9, 40000, jax.random.key(6))
    counts = np.bincount(np.ravel_multi_index(samples.T.astype(int), (4,) * n), minlength=4**n)
    assert _chisquare_pvalue(counts, p_model * 40000) > 1e-4
    # negative control: an output mask that lets site i see its own input (>= instead of >) breaks normalization
    good_masks = cvae.made_masks

    def leaky_masks(n_sites, n_outcomes, hidden):
        masks = good_masks(n_sites, n_outcomes, hidden)
        deg = np.arange(hidden[-1]) % n_sites
        masks[-1] = np.repeat(np.arange(1, n_sites + 1), n_outcomes)[None, :] >= deg[:, None]
        return masks

    monkeypatch.setattr(cvae, "made_masks", leaky_masks)
    leaky = cvae.make_model(n, hidden=(16, 16), dtype="float64", decoder="autoregressive")
    total = np.exp(_all_outcomes_teacher_forced_log_probs(leaky)(params, jnp.zeros(model.latent_dim), 0.9)).sum()
    assert abs(total - 1) > 1e-3, total


def test_autoregressive_decoder_beats_factorized_limit_at_crossover(povm):
    """Short ELBO training of the autoregressive decoder at h = 0.3, 0.5, 0.7 (N = 5).

    The site-factorized decoder plateaus at B = 0.978 (this budget) to 0.9805 (the full
    8000-step, 21-field study of docs/tomography.md) at h = 0.5; the autoregressive
    decoder must exceed that plateau already with this short budget."""
    import jax

    fields = np.array([0.3, 0.5, 0.7])
    ds = data.generate_dataset(5, fields, 30000, povm, seed=11, method="ed")
    model = cvae.make_model(5, hidden=(128, 128), decoder="autoregressive")
    config = cvae.TrainConfig(steps=1500, batch_size=512, learning_rate=3e-3, kl_warmup=50, seed=0, chunk=250)
    params, _ = cvae.train(model, ds.outcomes, ds.fields, config)
    p_exact = data.povm_distribution(ds.states[1], povm)
    p_is = cvae.outcome_distribution(model, params, 0.5, jax.random.key(3), n_latent=128, method="importance")
    fidelity = observables.bhattacharyya(p_exact, p_is)
    assert fidelity > 0.983, fidelity
    # the two estimators of the model distribution agree (prior MC: exactly normalized)
    p_prior = cvae.outcome_distribution(model, params, 0.5, jax.random.key(4), n_latent=2048)
    assert abs(p_prior.sum() - 1) < 1e-6 and abs(p_is.sum() - 1) < 5e-3  # float32 model
    assert abs(observables.bhattacharyya(p_exact, p_prior) - fidelity) < 2e-3
    # site-by-site samples follow the model distribution
    samples = cvae.sample(model, params, 0.5, 20000, jax.random.key(5))
    counts = np.bincount(np.ravel_multi_index(samples.T.astype(int), (4,) * 5), minlength=4**5)
    assert _chisquare_pvalue(counts, p_prior * 20000) > 1e-4


# ----------------------------------------------------------------------------- CLI


def test_cli_small_config(tmp_path, capsys):
    from distnqs.cli import main as distnqs_main

    outdir = tmp_path / "run"
    assert distnqs_main(["tomography", str(REPO / "configs" / "tomography_small.toml"), "--outdir", str(outdir)]) == 0
    summary = json.loads((outdir / "summary.json").read_text())
    for name in ("correlations.png", "magnetizations.png", "fidelity.png", "susceptibility.png", "renyi2.png", "data.h5"):
        assert (outdir / name).stat().st_size > 0
    fields = summary["fields"]
    for f, h in enumerate(fields):  # exact values in the summary are those of ED
        obs = observables.exact_from_statevector(data.ground_state_ed(5, h)[1])
        assert abs(summary["exact"]["mu_z"][f] - obs["mu_z"]) < 1e-10
    vae, exact = summary["vae"], summary["exact"]
    assert np.all(np.abs(np.array(vae["mu_x"]) - exact["mu_x"]) < 0.06)
    assert np.all(np.abs(np.array(vae["mu_z"]) - exact["mu_z"]) < 0.06)
    assert min(summary["fidelity"]["vae"]) > 0.96
    sus = summary["susceptibility"]
    np.testing.assert_allclose(sus["gumbel_x"], sus["fd_relaxed_x"], rtol=1e-2, atol=1e-2)
    ren = summary["renyi2"]
    assert abs(ren["data"][1][0] - ren["exact"][1][0]) < 0.1  # l = 1 at h = 0.9 from exact samples
    # an existing result is not overwritten without --force
    capsys.readouterr()
    assert distnqs_main(["tomography", str(REPO / "configs" / "tomography_small.toml"), "--outdir", str(outdir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--force" in err[0]


@pytest.mark.parametrize(
    "text, message",
    [
        ("[system]\nn_sites = 5\nfields = [0.5]\nbogus = 1\n", "unknown key system.bogus"),
        ("[system]\nn_sites = 5\nfields = [0.5]\n[nonsense]\n", "unknown config section"),
        ("[system]\nn_sites = 20\nfields = [0.5]\n[data]\nmethod = 'ed'\n", "n_sites <= 16"),
        ("[system]\nn_sites = 32\nfields = [0.5]\n[evaluation]\nfidelity = true\n", "fidelity"),
        ("[system]\nn_sites = 32\nfields = [0.5]\n[data]\nbond_dim = 8\n", "bond_dim"),
        ("[system]\nn_sites = 5\nfields = [0.5]\n[evaluation]\nrenyi_blocks = [5]\n", "renyi_blocks"),
        ("[system]\nn_sites = 5\nfields = [0.5]\n[model]\ndecoder = 'pixelcnn'\n", "model.decoder"),
        ("[system]\nn_sites = 5\nfields = [0.5]\n[evaluation]\nfidelity_estimator = 'exact'\n", "fidelity_estimator"),
        ("[system]\nn_sites = 'five'\nfields = [0.5]\n", "system.n_sites"),
        ("[system\nn_sites = 5\n", "malformed TOML"),
        (None, "config file not found"),
    ],
)
def test_cli_bad_config_is_one_line_exit_2(tmp_path, capsys, text, message):
    from distnqs.cli import main as distnqs_main

    path = tmp_path / "bad.toml"
    if text is not None:
        path.write_text(text)
    status = distnqs_main(["tomography", str(path), "--outdir", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(err) == 1 and err[0].startswith("distnqs: error:") and message in err[0], err
    assert not (tmp_path / "out").exists()
