"""Typed configs: every key is checked for type and range against one schema; bad input is one
``distnqs: error:`` line and exit 2, never a traceback; absurd sizes are refused up front."""

import copy
import os

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distnqs import cli, config, memory
from distnqs.errors import ConfigError

BASE = {
    "seed": 0,
    "n_steps": 3,
    "lattice": {"kind": "chain", "Lx": 6, "pbc": True},
    "hamiltonian": {"model": "tfim", "G": 1.0},
    "ansatz": {"model": "rbm", "alpha": 1},
    "sampler": {"n_samples": 64, "n_chains": 8, "n_discard": 2},
    "optimizer": {"kind": "sgd", "learning_rate": 0.02, "schedule": "cosine", "learning_rate_final": 0.005},
    "run": {"checkpoint_every": 0},
}

# every key the schema knows, per table (the mutations draw from these and from unknown names)
KEYS = {
    "": list(config.SCALARS_SCHEMA),
    "lattice": list(config.LATTICE),
    "hamiltonian": ["model", *config.HAMILTONIANS["tfim"], "J2", "total_sz"],
    "ansatz": ["model", *config.ANSATZES["rbm"], "layers"],
    **{name: list(table) for name, table in config.FILLED_TABLES.items()},
}

VALUES = st.one_of(
    st.text(max_size=6),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, -1, 1, 2, 3, 7, 2**31, 2**40, 10**9, 10**15, 400, 64, 0.5, -0.5, 1e-300, 1e300]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.lists(st.integers(min_value=-3, max_value=2**20), max_size=3),
    st.sampled_from(["cosine", "linear", "adam", "cg", "dense", "direct", "gibbs", "metropolis_exchange",
                     "heisenberg", "j1j2", "ffnn", "cnn", "naqs", "complex128", "float32", "square", "gpu", "rollback"]),
    st.fixed_dictionaries({"x": st.just(1)}),  # a fresh dict per draw (a shared one can be nested into itself)
)


@st.composite
def mutated_configs(draw):
    cfg = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        table = draw(st.sampled_from(list(KEYS)))
        target = cfg if table == "" else cfg.setdefault(table, {})
        if not isinstance(target, dict):
            continue
        op = draw(st.sampled_from(["set", "set", "set", "delete", "unknown", "not_a_table"]))
        if op == "set":
            target[draw(st.sampled_from(KEYS[table]))] = draw(VALUES)
        elif op == "delete" and target:
            target.pop(draw(st.sampled_from(sorted(target))))
        elif op == "unknown":
            target[draw(st.sampled_from(["typo", "Gx", "n_sample", "alfa"]))] = draw(VALUES)
        elif op == "not_a_table" and table:
            cfg[table] = draw(VALUES)
    return cfg


def _run_check(tmp_path, cfg, capsys, name="cfg.toml"):
    path = tmp_path / name
    path.write_text(tomli_w.dumps(cfg))
    capsys.readouterr()
    code = cli.main(["run", str(path), "--outdir", str(tmp_path / "out"), "--check"])
    return code, capsys.readouterr()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cfg=mutated_configs())
def test_mutated_configs_start_or_give_one_error_line(tmp_path, capsys, cfg):
    code, out = _run_check(tmp_path, cfg, capsys)
    lines = [ln for ln in out.err.splitlines() if ln.strip()]
    assert "Traceback" not in out.err
    if code == 0:
        assert "distnqs: config OK" in out.out and not lines, out.err
    else:
        assert code == 2, (code, out.err)
        assert len(lines) == 1 and lines[0].startswith("distnqs: error: "), out.err
    assert not (tmp_path / "out").exists()  # --check touches nothing


def test_the_base_config_starts(tmp_path, capsys):
    code, out = _run_check(tmp_path, BASE, capsys)
    assert code == 0, out.err


@pytest.mark.parametrize(
    "table,key,value,message",
    [
        ("hamiltonian", "G", "abc", "[hamiltonian] G must be a number, got 'abc'"),
        ("hamiltonian", "G", float("nan"), "[hamiltonian] G must be a number, got nan"),
        ("lattice", "Lx", -6, "[lattice] Lx must be a positive integer, got -6"),
        ("lattice", "pbc", "yes", "[lattice] pbc must be true or false, got 'yes'"),
        ("ansatz", "alpha", "2", "[ansatz] alpha must be a number, got '2'"),
        ("ansatz", "alpha", 0, "[ansatz] alpha must be a positive number, got 0"),
        ("sampler", "n_samples", 0, "[sampler] n_samples must be a positive integer, got 0"),
        ("sampler", "n_discard", 1.5, "[sampler] n_discard must be an integer, got 1.5"),
        ("optimizer", "learning_rate", -0.1, "[optimizer] learning_rate must be a positive number, got -0.1"),
        ("optimizer", "b1", 1.5, "[optimizer] b1 must be between 0 and 0.999999, got 1.5"),
        ("optimizer", "schedule", "step", "unknown optimizer schedule 'step'; choose one of: constant, linear, cosine"),
        ("run", "device", "tpu", "unknown run device 'tpu'; choose one of: auto, cpu, gpu"),
        ("run", "on_divergence", "explode", "unknown run on_divergence 'explode'"),
        ("run", "max_rollbacks", -1, "[run] max_rollbacks must be a non-negative integer, got -1"),
        ("run", "consistency_every", True, "[run] consistency_every must be an integer, got True"),
        ("run", "typo", 1, "[run] has no option 'typo'"),
        ("", "seed", 2**40, "seed must be between 0 and 2147483647, got 1099511627776"),
        ("", "n_steps", "10", "n_steps must be an integer, got '10'"),
    ],
)
def test_each_bad_key_is_named_with_its_value(table, key, value, message):
    cfg = copy.deepcopy(BASE)
    (cfg if table == "" else cfg.setdefault(table, {}))[key] = value
    with pytest.raises(ConfigError) as err:
        config.resolve(cfg)
    assert message in str(err.value)


def test_device_and_guard_keys_are_accepted_and_defaulted():
    cfg = copy.deepcopy(BASE)
    cfg["run"].update(device="cpu", on_divergence="rollback", max_rollbacks=5, consistency_every=10, variance_alarm=0.0)
    resolved = config.resolve(cfg)
    assert resolved["run"]["device"] == "cpu" and resolved["run"]["max_rollbacks"] == 5
    assert resolved["run"]["on_divergence"] == "rollback" and resolved["run"]["variance_alarm"] == 0.0
    defaults = config.resolve(BASE)["run"]
    assert (defaults["device"], defaults["on_divergence"], defaults["max_rollbacks"], defaults["consistency_every"]) == ("auto", "stop", 3, 100)
    assert (defaults["step_guard"], defaults["max_fs_length"], defaults["variance_alarm"], defaults["eval_steps"]) == ("rescale", 10.0, 20.0, 4)


def test_absurd_size_is_refused_with_the_estimate(tmp_path, capsys):
    cfg = copy.deepcopy(BASE)
    cfg["lattice"] = {"kind": "square", "Lx": 400, "Ly": 400}
    cfg["ansatz"] = {"model": "rbm", "alpha": 64}
    code, out = _run_check(tmp_path, cfg, capsys)
    assert code == 2
    (line,) = out.err.strip().splitlines()
    assert line.startswith("distnqs: error: estimated memory ") and "GiB exceeds the " in line
    assert "400x400 lattice, rbm, alpha 64" in line and "real parameters" in line


def test_memory_check_against_a_given_machine_size():
    from distnqs.models import build_model
    from distnqs.operators import build_lattice

    cfg = config.resolve(BASE)
    lattice = build_lattice(cfg["lattice"])
    ansatz = build_model(cfg["ansatz"], lattice)
    per_rank, words = memory.estimate(cfg, lattice, ansatz, 1)
    assert 0 < per_rank < 2**30 and "48 real parameters" in words  # 6 + 6 + 36 (alpha 1, N = 6)
    assert memory.check(cfg, lattice, ansatz, 1, available=10 * per_rank) == per_rank
    with pytest.raises(ConfigError, match="estimated memory .* exceeds"):
        memory.check(cfg, lattice, ansatz, 1, ranks_here=11, available=10 * per_rank)
    assert memory.machine_memory() > 0
