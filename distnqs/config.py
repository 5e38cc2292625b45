"""Run configuration: TOML in, a validated and fully resolved dict out.

Top-level keys: ``name``, ``seed``, ``n_steps`` and the tables ``[lattice]``,
``[hamiltonian]``, ``[ansatz]``, ``[sampler]``, ``[optimizer]``,
``[observables]``, ``[run]``. Unknown keys are errors (they are usually
typos). The builders of each layer validate their own table; this module only
checks the shape of the document and fills defaults.

Physics keys (``lattice``, ``hamiltonian``, ``ansatz``, ``seed``) define the
problem: :func:`physics_hash` fingerprints them so a resumed run refuses a
changed problem, while run-length keys (``n_steps``, ``[run]``) may change.
"""

from __future__ import annotations

import copy
import hashlib
import json
import tomllib
from pathlib import Path

from distnqs.errors import ConfigError

TABLES = ("lattice", "hamiltonian", "ansatz", "sampler", "optimizer", "observables", "run")
SCALARS = {"name": str, "seed": int, "n_steps": int}
PHYSICS_KEYS = ("lattice", "hamiltonian", "ansatz", "seed")

DEFAULTS = {
    "name": "distnqs",
    "seed": 0,
    "n_steps": 300,
    "ansatz": {"model": "rbm", "alpha": 1},
    "sampler": {"kind": "metropolis_local", "n_samples": 1024, "n_chains": 16, "n_discard": 16},
    "optimizer": {"kind": "sgd", "learning_rate": 0.01, "sr": True, "diag_shift": 0.01},
    "observables": {"magnetization": True},
    "run": {
        "chunk_size": 0,  # 0: no chunking
        "checkpoint_every": 50,
        "keep_checkpoints": 2,
        "print_every": 10,
        "reference": True,  # exact diagonalization when N <= 20
        "eval_steps": 0,  # extra sampling-only steps with the final parameters for summary.json
        "fast_update": True,  # use the ansatz's look-up tables (RBM) in Metropolis moves and local energies
        "device": "auto",  # auto | cpu | gpu: "gpu" refuses a CPU backend, "cpu" keeps jax off a GPU
    },
}
RUN_OPTIONS = set(DEFAULTS["run"])
DEVICES = ("auto", "cpu", "gpu")
OBSERVABLE_OPTIONS = {"magnetization"}


def _merge(defaults: dict, given: dict) -> dict:
    """Defaults updated by the given tables; ``[ansatz]`` is taken whole when given
    (options of one model mean nothing to another)."""
    out = copy.deepcopy(defaults)
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "ansatz":
            out[key] = {**out[key], **copy.deepcopy(value)}
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve(raw: dict) -> dict:
    """Check the document's shape and fill defaults; returns a new dict."""
    if not isinstance(raw, dict):
        raise ConfigError("a config is a TOML document (a table of keys)")
    unknown = set(raw) - set(TABLES) - set(SCALARS)
    if unknown:
        raise ConfigError(f"unknown config key {sorted(unknown)[0]!r} (known: {', '.join(list(SCALARS) + list(TABLES))})")
    for key, typ in SCALARS.items():
        if key in raw and (not isinstance(raw[key], typ) or isinstance(raw[key], bool)):
            raise ConfigError(f"{key} must be of type {typ.__name__}, got {raw[key]!r}")
    for table in TABLES:
        if table in raw and not isinstance(raw[table], dict):
            raise ConfigError(f"[{table}] must be a table")
    for table in ("lattice", "hamiltonian"):
        if table not in raw:
            raise ConfigError(f"the config needs a [{table}] table")
    cfg = _merge(DEFAULTS, raw)
    if cfg["n_steps"] < 0:
        raise ConfigError(f"n_steps must be >= 0, got {cfg['n_steps']}")
    bad = set(cfg["run"]) - RUN_OPTIONS
    if bad:
        raise ConfigError(f"[run] has no option {sorted(bad)[0]!r} (options: {', '.join(sorted(RUN_OPTIONS))})")
    bad = set(cfg["observables"]) - OBSERVABLE_OPTIONS
    if bad:
        raise ConfigError(f"[observables] has no option {sorted(bad)[0]!r} (options: {', '.join(sorted(OBSERVABLE_OPTIONS))})")
    for key in ("checkpoint_every", "keep_checkpoints", "print_every", "chunk_size", "eval_steps"):
        value = cfg["run"][key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"[run] {key} must be a non-negative integer, got {value!r}")
    if not isinstance(cfg["run"]["fast_update"], bool):
        raise ConfigError(f"[run] fast_update must be true or false, got {cfg['run']['fast_update']!r}")
    if cfg["run"]["device"] not in DEVICES:
        raise ConfigError(f"[run] device must be one of {', '.join(map(repr, DEVICES))}, got {cfg['run']['device']!r}")
    if cfg["run"]["keep_checkpoints"] < 1:
        raise ConfigError("[run] keep_checkpoints must be >= 1")
    return cfg


def parse(text: str, source: str = "<string>") -> dict:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"malformed config {source}: {exc}") from exc
    return resolve(raw)


def load(path) -> dict:
    """Read, parse and resolve a TOML config file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {str(path)!r}: {exc}") from exc
    return parse(text, str(path))


def physics_hash(cfg: dict) -> str:
    """sha256 of the physics keys (lattice, Hamiltonian, ansatz, seed)."""
    blob = json.dumps({k: cfg.get(k) for k in PHYSICS_KEYS}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def full_hash(cfg: dict) -> str:
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()


def dumps_toml(cfg: dict) -> str:
    """The resolved config as TOML (``None`` values dropped: TOML has no null)."""
    import tomli_w

    def clean(d):
        return {k: clean(v) if isinstance(v, dict) else v for k, v in d.items() if v is not None}

    return tomli_w.dumps(clean(cfg))
