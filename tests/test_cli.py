"""Command line: bad input gives one clear error line and a non-zero exit; nothing is overwritten."""

import json

import pytest

from conftest import assert_one_line_error, requires_mpi, run_cli

GOOD = """
seed = 0
n_steps = 3
[lattice]
kind = "chain"
Lx = 6
pbc = true
[hamiltonian]
model = "tfim"
G = 1.0
[sampler]
n_samples = 64
n_chains = 8
n_discard = 2
[run]
checkpoint_every = 0
"""


@pytest.mark.parametrize(
    "replace,fragment",
    [
        (('model = "tfim"', 'model = "tfim_xyz"'), "unknown hamiltonian model 'tfim_xyz'"),
        (("[sampler]", '[ansatz]\nmodel = "resnet"\n[sampler]'), "unknown ansatz model 'resnet'"),
        (("[sampler]", '[sampler]\nkind = "hamiltonian_mc"'), "unknown sampler kind 'hamiltonian_mc'"),
        (("[run]", '[optimizer]\nkind = "lbfgs"\n[run]'), "unknown optimizer kind 'lbfgs'"),
        (("n_samples = 64", "n_samples = 60"), "not divisible among n_chains = 8"),
        (("seed = 0", "seed = 0\nn_stpes = 3"), "unknown config key 'n_stpes'"),
        (("Lx = 6", "Lx = -6"), "positive integer"),
        (("[run]", '[ansatz]\nmodel = "cnn"\nshape = [3, 3]\n[run]'), "does not accept 6 sites"),
    ],
)
def test_bad_config_values(tmp_path, replace, fragment):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(GOOD.replace(*replace))
    proc = run_cli(["run", str(cfg), "--outdir", str(tmp_path / "out")])
    assert_one_line_error(proc, fragment)


def test_missing_and_malformed_config(tmp_path):
    assert_one_line_error(run_cli(["run", str(tmp_path / "nope.toml"), "--outdir", str(tmp_path / "o")]), "not found")
    bad = tmp_path / "bad.toml"
    bad.write_text("[lattice\nLx = 4")
    assert_one_line_error(run_cli(["run", str(bad), "--outdir", str(tmp_path / "o")]), "malformed config")
    assert_one_line_error(run_cli(["frobnicate"]), "unknown command")
    assert_one_line_error(run_cli(["run"]), "required")


def test_outdir_with_foreign_files_is_refused_and_left_alone(tmp_path):
    cfg = tmp_path / "good.toml"
    cfg.write_text(GOOD)
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "chapter1.tex").write_text("precious")
    assert_one_line_error(run_cli(["run", str(cfg), "--outdir", str(out)]), "holds no distnqs run")
    assert (out / "chapter1.tex").read_text() == "precious" and len(list(out.iterdir())) == 1


@requires_mpi
def test_n_chains_not_divisible_among_ranks(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(GOOD.replace("n_chains = 8", "n_chains = 3").replace("n_samples = 64", "n_samples = 63"))
    proc = run_cli(["run", str(cfg), "--outdir", str(tmp_path / "out")], np_=2)
    assert proc.returncode != 0
    assert "n_chains = 3 is not divisible among 2 ranks" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_operator_size_mismatch_in_the_python_api():
    import netket as nk

    from distnqs import config
    from distnqs.errors import ConfigError
    from distnqs.problem import build_problem

    cfg = config.parse(GOOD)
    op = nk.operator.IsingJax(nk.hilbert.Spin(0.5, 8), nk.graph.Chain(8), h=1.0)
    with pytest.raises(ConfigError, match="acts on 8 sites but the lattice has 6"):
        build_problem(cfg, hamiltonian=op)


def test_a_small_run_writes_summary_and_log(tmp_path):
    cfg = tmp_path / "good.toml"
    cfg.write_text(GOOD)
    proc = run_cli(["run", str(cfg), "--outdir", str(tmp_path / "out")], check=True)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    for key in ("step", "energy", "energy_per_site", "n_sites", "n_ranks", "reference"):
        assert key in summary
    assert set(summary["energy"]) >= {"mean", "error", "variance"}
    assert summary["step"] == 3 and summary["n_sites"] == 6 and summary["n_ranks"] == 1
    assert set(summary["reference"]) >= {"energy_per_site", "relative_error"}
    assert "E/N" in proc.stdout
