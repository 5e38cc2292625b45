"""Typed configs of the two generative CLIs (``distnqs tomography``, ``distnqs ising-vae``):
mutated valid configs (wrong types, signs, missing and unknown keys, huge values) either
resolve, within this machine's memory, or raise one ``ConfigError`` line; through the CLI that
line is ``distnqs: error:`` with exit 2 and no output directory."""

import copy
import tomllib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import REPO
from distnqs import cli
from distnqs.errors import ConfigError
from distnqs.generative.ising import cli as ising_cli
from distnqs.generative.tomography import cli as tomo_cli
from distnqs.memory import machine_memory


def _base(name):
    with open(REPO / "configs" / name, "rb") as f:
        return tomllib.load(f)


TOMO_BASE = _base("tomography_small.toml")
ISING_BASE = _base("ising_vae_small.toml")

# table -> known keys; "" holds top-level scalars, "vae.dense" a sub-table
TOMO_KEYS = {section: list(keys) for section, keys in tomo_cli._SCHEMA.items()}
ISING_KEYS = {section: list(keys) for section, keys in ising_cli.SCHEMA.items()}

VALUES = st.one_of(
    st.text(max_size=6),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, -1, 1, 2, 3, 7, 64, 400, 2**31, 2**40, 10**9, 10**15, 0.5, -0.5, 1e-300, 1e300]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.lists(st.one_of(st.integers(min_value=-3, max_value=2**40), st.floats(allow_nan=True), st.text(max_size=3)), max_size=3),
    st.sampled_from(["ed", "mps", "auto", "prior", "importance", "autoregressive", "float64", "dense", "conv"]),
    st.fixed_dictionaries({"x": st.just(1)}),  # a fresh dict per draw (a shared one can be nested into itself)
)


def _table(cfg, section):
    if section == "":
        return cfg
    node = cfg
    for part in section.split("."):
        node = node.setdefault(part, {}) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            return None
    return node


@st.composite
def mutated(draw, base, keys):
    cfg = copy.deepcopy(base)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        section = draw(st.sampled_from(list(keys)))
        target = _table(cfg, section)
        if target is None:
            continue
        op = draw(st.sampled_from(["set", "set", "set", "delete", "unknown", "not_a_table"]))
        if op == "set":
            target[draw(st.sampled_from(keys[section]))] = draw(VALUES)
        elif op == "delete" and target:
            target.pop(draw(st.sampled_from(sorted(target))))
        elif op == "unknown":
            target[draw(st.sampled_from(["typo", "n_site", "fieldz", "epoch"]))] = draw(VALUES)
        elif op == "not_a_table" and section and "." not in section:
            cfg[section] = draw(VALUES)
    return cfg


def _resolves_or_one_line(resolve, estimate, cfg):
    try:
        resolved = resolve(cfg)
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc), str(exc)
        return
    assert estimate(resolved) <= machine_memory()  # an accepted job fits this machine


@settings(max_examples=150, deadline=None)
@given(cfg=mutated(TOMO_BASE, TOMO_KEYS))
def test_mutated_tomography_configs_resolve_or_give_one_error_line(cfg):
    _resolves_or_one_line(tomo_cli.resolve_config, tomo_cli.memory_estimate, cfg)


@settings(max_examples=150, deadline=None)
@given(cfg=mutated(ISING_BASE, ISING_KEYS))
def test_mutated_ising_vae_configs_resolve_or_give_one_error_line(cfg):
    _resolves_or_one_line(ising_cli.parse_config, ising_cli.memory_estimate, cfg)


def test_the_base_configs_resolve():
    assert tomo_cli.resolve_config(copy.deepcopy(TOMO_BASE))["system"]["n_sites"] == 5
    assert ising_cli.parse_config(copy.deepcopy(ISING_BASE))["lattice"]["L"] == 8


@pytest.mark.parametrize(
    "command,base,section,key,value,message",
    [
        ("tomography", TOMO_BASE, "system", "n_sites", "five", "system.n_sites must be of type int, got 'five'"),
        ("tomography", TOMO_BASE, "training", "steps", -3, "training.steps must be >= 1"),
        ("tomography", TOMO_BASE, "data", "samples_per_field", 10**15, "estimated memory"),
        ("tomography", TOMO_BASE, "model", "hidden", [2**30, 2**30], "estimated memory"),
        ("ising-vae", ISING_BASE, "lattice", "L", 2.5, "lattice.L must be an integer, got 2.5"),
        ("ising-vae", ISING_BASE, "vae", "beta", -1.0, "vae.beta must be >= 0, got -1.0"),
        ("ising-vae", ISING_BASE, "monte_carlo", "n_configs", 10**15, "estimated memory"),
    ],
)
def test_bad_key_through_the_cli_is_one_error_line_and_exit_2(tmp_path, capsys, command, base, section, key, value, message):
    import tomli_w

    cfg = copy.deepcopy(base)
    _table(cfg, section)[key] = value
    path = tmp_path / "cfg.toml"
    path.write_text(tomli_w.dumps(cfg))
    capsys.readouterr()
    code = cli.main([command, str(path), "--outdir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("distnqs: error: "), err
    assert message in lines[0] and "Traceback" not in err
    assert not (tmp_path / "out").exists()
