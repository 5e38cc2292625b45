"""[run] init_from: a run starts from another run's parameters (e.g. a plain RBM into the same RBM
with symmetries), only at a fresh start; a resume continues from its own checkpoints."""

from __future__ import annotations

import re
import shutil

import jax
import numpy as np
import pytest

from conftest import assert_one_line_error, assert_same_final_checkpoints, run_cli
from distnqs import config
from distnqs.driver import VMCJob, run
from distnqs.errors import ConfigError, DistnqsWarning
from distnqs.io import checkpoint
from distnqs.problem import build_problem

BASE = """
seed = 3
n_steps = {n_steps}
[lattice]
kind = "chain"
Lx = 8
pbc = true
[hamiltonian]
model = "heisenberg"
total_sz = 0
[ansatz]
model = "rbm"
alpha = {alpha}
{ansatz_extra}
[sampler]
kind = "metropolis_exchange"
n_samples = 64
n_chains = 8
n_discard = 2
[optimizer]
kind = "sgd"
learning_rate = 0.02
sr = true
diag_shift = 0.01
[run]
checkpoint_every = 2
print_every = 1000
eval_steps = 1
{run_extra}
"""


def _cfg(n_steps=4, alpha=1, ansatz_extra="", run_extra="", **lattice):
    text = BASE.format(n_steps=n_steps, alpha=alpha, ansatz_extra=ansatz_extra, run_extra=run_extra)
    for key, value in lattice.items():
        text = text.replace(f"{key} = 8", f"{key} = {value}")
    return config.parse(text)


def _symmetric(source, **kw):
    return _cfg(ansatz_extra='symmetries = "translations"', run_extra=f'init_from = "{source}"', **kw)


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    """A finished plain-RBM run (4 SR steps, checkpoints at steps 2 and 4)."""
    out = tmp_path_factory.mktemp("plain") / "run"
    summary, code = run(_cfg(), out, quiet=True)
    assert code == 0 and summary["step"] == 4
    return out


def test_the_start_holds_the_source_checkpoints_parameters(plain_run):
    """The translation-projected RBM starts from exactly the plain run's parameters: the newest
    checkpoint of its directory, or the file named; without init_from (or on resume) the seed's."""
    newest = checkpoint.read_newest_valid(plain_run)
    assert newest["step"] == 4
    for source in (plain_run, newest["path"], checkpoint.path_for(plain_run, 2)):
        job = VMCJob(build_problem(_symmetric(source)))
        params = job.init_state(fresh=True)[0]
        expected = checkpoint.read(source if source != plain_run else newest["path"])["params"]
        leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(params)]
        assert len(leaves) == len(expected) and all(np.array_equal(x, y) for x, y in zip(leaves, expected))
        assert job.init_source["step"] == (2 if source == checkpoint.path_for(plain_run, 2) else 4)
    seeded = VMCJob(build_problem(_symmetric(plain_run))).init_state(fresh=False)[0]
    assert not np.array_equal(np.asarray(jax.tree_util.tree_leaves(seeded)[0]), newest["params"][0])


def test_a_resume_ignores_init_from_and_equals_the_uninterrupted_run(plain_run, tmp_path):
    """Stopped after 2 of 4 steps, the source deleted, the resumed run ends bit-identical to an
    uninterrupted one: after the first start only the run's own checkpoints count."""
    source = tmp_path / "source"
    shutil.copytree(plain_run, source)
    whole, code = run(_symmetric(source), tmp_path / "whole", quiet=True)
    assert code == 0 and whole["init_from"] == {"path": str(checkpoint.path_for(source, 4)), "step": 4}
    _, code = run(_symmetric(source), tmp_path / "parts", quiet=True, stop_after=2)
    assert code != 0 and checkpoint.list_checkpoints(tmp_path / "parts")[-1][0] == 2
    shutil.rmtree(source)
    resumed, code = run(_symmetric(source), tmp_path / "parts", quiet=True)
    assert code == 0 and resumed["step"] == 4
    assert resumed["init_from"] == whole["init_from"]  # recorded in the run directory at the first start
    assert_same_final_checkpoints(tmp_path / "whole", tmp_path / "parts")
    assert resumed["energy"]["mean"] == whole["energy"]["mean"]


def test_init_from_added_to_a_started_run_is_ignored_with_a_warning(plain_run, tmp_path):
    """A run that started from its seed, resumed with init_from in its config, keeps its own
    parameters and says that the key is ignored; its summary names no source."""
    out = tmp_path / "plain"
    shutil.copytree(plain_run, out)
    with pytest.warns(DistnqsWarning, match=r"init_from is read only at a fresh start"):
        summary, code = run(_cfg(n_steps=5, run_extra=f'init_from = "{plain_run}"'), out, quiet=True)
    assert code == 0 and summary["step"] == 5 and "init_from" not in summary


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"alpha": 2}, "same network and sizes needed"),
        ({"Lx": 10}, "has a different [lattice]"),
    ],
)
def test_a_source_that_does_not_fit_is_refused(plain_run, tmp_path, change, fragment):
    with pytest.raises(ConfigError, match=r"^\[run\] init_from .*" + re.escape(fragment)):
        run(_symmetric(plain_run, **change), tmp_path / "out", quiet=True)


def test_a_missing_source_is_a_one_line_error_and_the_same_command_starts_once_fixed(plain_run, tmp_path):
    cfg = tmp_path / "cfg.toml"
    missing = tmp_path / "nowhere"
    cfg.write_text(BASE.format(n_steps=4, alpha=1, ansatz_extra="", run_extra=f'init_from = "{missing}"'))
    proc = run_cli(["run", str(cfg), "--outdir", str(tmp_path / "out")])
    assert_one_line_error(proc, "[run] init_from", "not found")
    empty = tmp_path / "empty"
    empty.mkdir()
    cfg.write_text(BASE.format(n_steps=4, alpha=1, ansatz_extra="", run_extra=f'init_from = "{empty}"'))
    proc = run_cli(["run", str(cfg), "--outdir", str(tmp_path / "out")])
    assert_one_line_error(proc, "[run] init_from", "holds no checkpoint")
    assert not checkpoint.list_checkpoints(tmp_path / "out")
    cfg.write_text(BASE.format(n_steps=2, alpha=1, ansatz_extra="", run_extra=f'init_from = "{plain_run}"'))
    summary, code = run(config.load(cfg), tmp_path / "out", quiet=True)  # the source fixed, the same run starts (in-process: no compile of its own)
    assert code == 0 and summary["init_from"] == {"path": str(checkpoint.path_for(plain_run, 4)), "step": 4}


def test_evolve_starts_from_a_checkpoint_through_the_same_reader(plain_run):
    """``[dynamics] initial_state = "checkpoint"`` reads with the same function: the run's newest
    parameters, and a different [ansatz] is refused (t-VMC evolves that very state)."""
    from distnqs.dynamics.evolve import EvolveJob

    dynamics = f'[dynamics]\ninitial_state = "checkpoint"\ncheckpoint = "{plain_run}"\nt_final = 0.1\ndt = 0.05\nimaginary = true\n'
    text = BASE.format(n_steps=4, alpha=1, ansatz_extra="", run_extra="") + dynamics
    params = EvolveJob(config.parse(text)).init_state()[0]
    expected = checkpoint.read_newest_valid(plain_run)["params"]
    assert all(np.array_equal(np.asarray(x), y) for x, y in zip(jax.tree_util.tree_leaves(params), expected, strict=True))
    text = BASE.format(n_steps=4, alpha=1, ansatz_extra='symmetries = "translations"', run_extra="") + dynamics
    with pytest.raises(ConfigError, match=r"^\[dynamics\] checkpoint .* has a different \[ansatz\]"):
        EvolveJob(config.parse(text)).init_state()
