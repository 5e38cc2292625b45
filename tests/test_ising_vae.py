"""VAEs on Wolff configurations of the 2D Ising model: loss terms, decoding, training, and the ``ising-vae`` CLI."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

import distnqs  # noqa: F401  (float64 before jax)
import jax
import jax.numpy as jnp

from distnqs import cli as top_cli
from distnqs.generative.ising import vae as V
from distnqs.generative.ising.exact import exact_transfer_matrix
from distnqs.generative.ising.wolff import energy_per_site, magnetization, run_wolff

REPO = Path(__file__).resolve().parents[1]
SMALL = REPO / "configs" / "ising_vae_small.toml"


# --------------------------------------------------------------------------- loss terms and decoding

def test_kl_divergence_against_numerical_integral():
    mu = np.array([[0.3, -1.2]])
    logvar = np.array([[-0.7, 0.4]])
    z = np.linspace(-12, 12, 200001)
    dz = z[1] - z[0]
    total = 0.0
    for k in range(2):
        s2 = np.exp(logvar[0, k])
        q = np.exp(-(z - mu[0, k]) ** 2 / (2 * s2)) / np.sqrt(2 * np.pi * s2)
        logp = -z**2 / 2 - 0.5 * np.log(2 * np.pi)
        logq = -(z - mu[0, k]) ** 2 / (2 * s2) - 0.5 * np.log(2 * np.pi * s2)
        total += np.sum(q * (logq - logp)) * dz
    assert float(V.kl_divergence(jnp.asarray(mu), jnp.asarray(logvar))[0]) == pytest.approx(total, rel=1e-8)
    assert float(V.kl_divergence(jnp.zeros((1, 3)), jnp.zeros((1, 3)))[0]) == 0.0


def test_bernoulli_cross_entropy_is_the_negative_log_likelihood():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 4, 4)) * 3
    x = (rng.random((3, 4, 4)) < 0.5).astype(float)
    p = 1 / (1 + np.exp(-logits))
    expected = -(x * np.log(p) + (1 - x) * np.log(1 - p)).sum(axis=(1, 2))
    np.testing.assert_allclose(np.asarray(V.bernoulli_cross_entropy(jnp.asarray(logits), jnp.asarray(x))),
                               expected, rtol=1e-10)


def test_spin_binary_maps_and_decoding():
    s = np.array([[[1, -1], [-1, 1]]], np.int8)
    np.testing.assert_array_equal(np.asarray(V.spins_to_binary(s)), [[[1.0, 0.0], [0.0, 1.0]]])
    np.testing.assert_array_equal(np.asarray(V.binary_to_spins(V.spins_to_binary(s))), s)
    probs = np.array([[[0.9, 0.1], [0.51, 0.49]]], np.float32)
    np.testing.assert_array_equal(V.decode_threshold(probs), [[[1, -1], [1, -1]]])
    # Bernoulli decoding: frequency of +1 equals p at every site
    p = np.tile(np.array([0.05, 0.3, 0.5, 0.8], np.float32), (40000, 1))[:, None, :]
    s = V.decode_bernoulli(p, jax.random.PRNGKey(1))
    assert s.dtype == np.int8 and set(np.unique(s)) <= {-1, 1}
    freq = (s == 1).mean(axis=0)[0]
    err = np.sqrt(p[0, 0] * (1 - p[0, 0]) / 40000)
    assert np.all(np.abs(freq - p[0, 0]) < 4.5 * err)


def test_models_shapes_and_initialization():
    for kind in ("dense", "conv"):
        model = V.make_model(kind, 8, 3)
        params = V.init_params(model, jax.random.PRNGKey(0))
        ref = jax.eval_shape(lambda m=model: m.init({"params": jax.random.PRNGKey(0)}, jnp.zeros((1, 8, 8), jnp.float32),
                                                     jax.random.PRNGKey(0)))
        assert jax.tree.structure(params) == jax.tree.structure(ref)
        for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(ref)):
            assert a.shape == b.shape and a.dtype == jnp.float32
        # deterministic in the key, different for another key
        again = V.init_params(model, jax.random.PRNGKey(0))
        other = V.init_params(model, jax.random.PRNGKey(1))
        assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(again)))
        assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(other)))
        x = V.spins_to_binary(np.ones((5, 8, 8), np.int8))
        logits, mu, logvar = model.apply(params, x, jax.random.PRNGKey(2))
        assert logits.shape == (5, 8, 8) and mu.shape == (5, 3) and logvar.shape == (5, 3)
    dense = V.make_model("dense", 8, 2)
    widths = [v["kernel"].shape for v in V.init_params(dense, jax.random.PRNGKey(0))["params"].values()]
    assert sorted(widths) == sorted([(64, 32), (32, 8), (8, 16), (16, 2), (16, 2), (2, 16), (16, 8), (8, 32), (32, 64)])
    with pytest.raises(ValueError):
        V.make_model("conv", 7, 2)
    with pytest.raises(ValueError):
        V.make_model("gan", 8, 2)
    # the lecun-normal scale of the kernels: std ~ 1/sqrt(fan_in)
    k = np.asarray(V.init_params(dense, jax.random.PRNGKey(4))["params"]["enc_0"]["kernel"])
    assert k.std() == pytest.approx(1 / 8, rel=0.1) and np.abs(k).max() <= 2 / 8 / 0.8796 + 1e-6


def test_dense_vae_on_ordered_phase():
    """T = 1.5 (almost fully ordered): training lowers -ELBO, threshold-decoded samples have the training <|m|>."""
    res = run_wolff(jax.random.PRNGKey(21), 8, 1.5, n_configs=25000, n_replicas=500)  # shapes as in the small config
    train = res.configs[:6000]
    model = V.make_model("dense", 8, 2)
    out = V.train_vae(model, train, jax.random.PRNGKey(3), epochs=8, batch_size=128, learning_rate=2e-3, n_eval=2000)
    assert len(out.history) == 8
    assert out.final["loss"] < out.initial["loss"] - 25  # from ~44 nats (random decoder) to well below 20
    assert out.history[-1]["loss"] < out.history[0]["loss"]
    assert out.final["loss"] == pytest.approx(out.final["recon"] + out.final["kl"], rel=1e-5)
    probs = V.generate_probabilities(out.params, model, jax.random.PRNGKey(4), 20000)
    thr = V.decode_threshold(probs)
    bern = V.decode_bernoulli(probs, jax.random.PRNGKey(5))
    m_train = np.abs(magnetization(train)).mean()
    assert abs(np.abs(magnetization(thr)).mean() - m_train) < 0.03
    # both magnetization sectors are generated
    assert 0.3 < (magnetization(thr) > 0).mean() < 0.7
    # Bernoulli decoding samples every site independently given z: the energy lies above the training energy
    assert energy_per_site(bern).mean() > energy_per_site(train).mean() + 0.05
    # the same key reproduces the same training
    again = V.train_vae(model, train, jax.random.PRNGKey(3), epochs=1, batch_size=128, learning_rate=2e-3, n_eval=2000)
    assert again.history[0] == out.history[0]


# --------------------------------------------------------------------------- command line

def _run_cli(argv, capsys):
    code = top_cli.main(["ising-vae", *argv])
    captured = capsys.readouterr()
    return code, captured.err


@pytest.fixture(scope="session")  # see conftest: built once per worker, never rebuilt
def small_run(tmp_path_factory):
    outdir = tmp_path_factory.mktemp("ising_vae") / "run"
    code = top_cli.main(["ising-vae", str(SMALL), "--outdir", str(outdir), "--quiet"])
    assert code == 0
    return outdir, json.loads((outdir / "summary.json").read_text())


@pytest.mark.xdist_group("ising_vae_run")  # shares a session-scoped fixture: computed once, on one worker
def test_cli_small_config_outputs(small_run):
    outdir, summary = small_run
    assert {"L", "T_c", "models", "temperatures", "timing", "files", "config", "results_table_markdown"} <= set(summary)
    assert summary["models"] == ["dense", "conv"]
    assert [t["T"] for t in summary["temperatures"]] == [1.5, 2.269, 3.5]
    for name in summary["files"]["plots"]:
        data = (outdir / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10000, name
    assert len([p for p in summary["files"]["plots"] if p.startswith("hist_T")]) == 3
    assert {"latent_dense.png", "latent_conv.png", "temperature_dependence.png"} <= set(summary["files"]["plots"])
    table = (outdir / "results.md").read_text().splitlines()
    assert sum(line.startswith("| 2.269 |") for line in table) == 2 and "\\|m\\| Wolff" in table[0]
    with h5py.File(outdir / "wolff_configs.h5") as f:
        assert f["T_2.2690/spins"].shape == (25000, 8, 8) and f["T_2.2690/spins"].dtype == np.int8
        np.testing.assert_allclose(f["T_2.2690/energy_per_site"][:100], energy_per_site(f["T_2.2690/spins"][:100]))
    with h5py.File(outdir / "vae_generated.h5") as f:
        assert f["T_1.5000/dense/bernoulli"].shape == (4000, 8, 8)
        assert f["T_1.5000/conv/threshold"].shape == (4000, 8, 8)
        assert "params" in f["T_1.5000/dense"]
    for t in summary["temperatures"]:
        for name in ("dense", "conv"):
            m = t["models"][name]
            assert {"threshold", "bernoulli", "elbo", "elbo_initial", "history", "latent"} <= set(m)
            assert m["elbo"]["loss"] < m["elbo_initial"]["loss"]
            assert m["n_train"] == 6000 and m["threshold"]["n"] == 4000
            assert len(m["restart_losses"]) == m["training"]["restarts"] == {"dense": 2, "conv": 1}[name]
            assert m["elbo"]["loss"] == min(m["restart_losses"])


@pytest.mark.xdist_group("ising_vae_run")  # shares a session-scoped fixture: computed once, on one worker
def test_cli_small_config_physics(small_run):
    """Training data agree with the exact 8x8 values; the dense VAE reproduces the ordered phase; Bernoulli energies are too high."""
    _, summary = small_run
    for t in summary["temperatures"]:
        exact = exact_transfer_matrix(8, t["T"])
        assert t["exact"]["E_per_site"] == pytest.approx(exact.E_per_site, abs=1e-10)
        tr = t["training"]
        assert abs(tr["E_per_site"] - exact.E_per_site) < 4 * tr["E_per_site_err"]
        assert abs(tr["abs_m"] - exact.abs_m) < 4 * tr["abs_m_err"]
        # the paper's finding: independent (Bernoulli) spins given z suppress correlations -> energy too high
        for name in ("dense", "conv"):
            assert t["models"][name]["bernoulli"]["E_excess"] > 0.1
    cold = summary["temperatures"][0]
    assert abs(cold["models"]["dense"]["threshold"]["abs_m"] - cold["training"]["abs_m"]) < 0.05
    # latent space: the encoder mean tracks the magnetization in the ordered phase
    assert cold["models"]["dense"]["latent"]["max_abs_corr_m"] > 0.9


@pytest.mark.xdist_group("ising_vae_run")  # shares a session-scoped fixture: computed once, on one worker
def test_cli_refuses_to_overwrite_without_force(small_run, capsys):
    outdir, _ = small_run
    before = (outdir / "summary.json").read_bytes()
    code, err = _run_cli([str(SMALL), "--outdir", str(outdir)], capsys)
    assert code == 2
    assert err.count("\n") == 1 and "summary.json exists" in err and "--force" in err
    assert (outdir / "summary.json").read_bytes() == before


@pytest.mark.parametrize("text,needle", [
    ("seed = 1\n[lattice]\nL = 8\nwidth = 3\n", "unknown config key [lattice] 'width'"),
    ("[monte_carlo]\nn_configs = 1000\nn_replicas = 300\n", "multiple of monte_carlo.n_replicas"),
    ("[vae]\nmodels = ['dense', 'rbm']\n", "vae.models"),
    ("[lattice]\nL = 7\n", "conv VAE needs an even lattice.L"),
    ("[lattice\nL = 8\n", "malformed TOML"),
    ("[vae]\nbatch_size = 1000000\n", "batch_size"),
    ("[monte_carlo]\ntemperatures = [2.0, -1.0]\n", "positive"),
    ("[vae]\nepochs = 'ten'\n", "vae.epochs must be an integer"),
    ("frobnicate = true\n", "unknown config key 'frobnicate'"),
])
def test_cli_bad_config_is_one_line_error(tmp_path, capsys, text, needle):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    code, err = _run_cli([str(cfg), "--outdir", str(tmp_path / "out")], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("distnqs: error: ") and needle in err, err
    assert not (tmp_path / "out").exists()


def test_cli_missing_config_file(tmp_path, capsys):
    code, err = _run_cli([str(tmp_path / "nope.toml"), "--outdir", str(tmp_path / "out")], capsys)
    assert code == 2 and err.count("\n") == 1 and "config file not found" in err
