"""Run configuration: TOML in, a validated and fully resolved dict out.

Top-level keys: ``name``, ``seed``, ``n_steps`` and the tables ``[lattice]``,
``[hamiltonian]``, ``[ansatz]``, ``[sampler]``, ``[optimizer]``,
``[observables]``, ``[run]``, and ``[dynamics]`` for ``distnqs evolve`` (then
``n_steps`` is ``t_final / dt``). Unknown keys are errors (they are usually
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

from distnqs import schema
from distnqs.errors import ConfigError
from distnqs.schema import REQUIRED, Key

TABLES = ("lattice", "hamiltonian", "ansatz", "sampler", "optimizer", "observables", "run", "dynamics")
PHYSICS_KEYS = ("lattice", "hamiltonian", "ansatz", "seed")

# ---------------------------------------------------------------------------
# The schema: every key of every table, with its type, range and default.
# A default of UNSET leaves the key out of the resolved config (its builder
# has a default); REQUIRED keys must be given. To add a key, add one line here.
# ---------------------------------------------------------------------------
_INT32 = 2**31 - 1
_DTYPES = ("float32", "float64", "complex64", "complex128")

SCALARS_SCHEMA = {
    "name": Key("str", "distnqs"),
    "seed": Key("int", 0, min=0, max=_INT32),
    "n_steps": Key("int", 300, min=0, max=10**9),
}
SCALARS = {"name": str, "seed": int, "n_steps": int}

LATTICE = {
    "kind": Key("str", choices=("square", "chain")),
    "L": Key("int", min=1, max=2**16),
    "Lx": Key("int", min=1, max=2**16),
    "Ly": Key("int", min=1, max=2**16),
    "pbc": Key("bool"),
}

# [hamiltonian]: ``model`` picks one of these tables of options.
HAMILTONIANS = {
    "tfim": {"G": Key("number", REQUIRED), "J": Key("number")},
    "heisenberg": {"J": Key("number"), "sign_rule": Key("bool"), "total_sz": Key("number", min=-2**16, max=2**16)},
    "j1j2": {
        "J": Key("number"), "J1": Key("number"), "J2": Key("number", REQUIRED),
        "sign_rule": Key("bool"), "total_sz": Key("number", min=-2**16, max=2**16),
    },
}

# [ansatz]: ``model`` picks one of these (``netket.<Name>`` models are checked by their constructor).
_ANSATZ_COMMON = {"param_dtype": Key("str", choices=_DTYPES), "init_std": Key("number", min=0, max=1e3)}
# projection onto a symmetry sector (distnqs.models.symmetric): any non-autoregressive ansatz
_SYMMETRY = {"symmetries": Key("str", choices=("none", "translations", "lattice")), "sector": Key(("list[int]", "str")),
             "spin_flip": Key("str", choices=("none", "even", "odd"))}
ANSATZES = {
    "rbm": {**_ANSATZ_COMMON, **_SYMMETRY, "alpha": Key("number", min=0, min_open=True, max=2**16),
            "use_visible_bias": Key("bool"), "use_hidden_bias": Key("bool")},
    # invariant by construction; symmetries (not "none") gives it the group, trivial sector only
    "rbm_symm": {**_ANSATZ_COMMON, **_SYMMETRY, "alpha": Key("int", min=1, max=2**16)},
    "ffnn": {**_ANSATZ_COMMON, **_SYMMETRY, "alpha": Key("number", min=0, min_open=True, max=2**16), "layers": Key("int", min=1, max=256)},
    "cnn": {**_ANSATZ_COMMON, **_SYMMETRY, "shape": Key("list[int]", min=1, max=2**16, nonempty=True), "pbc": Key("bool"),
            "features": Key("list[int]", min=1, max=2**16, nonempty=True), "kernel_size": Key("int", min=1, max=2**10)},
    "naqs": {**_ANSATZ_COMMON, "Lx": Key("int", min=1, max=2**16), "Ly": Key("int", min=1, max=2**16),
             "depth": Key("int", min=1, max=256), "features": Key("int", min=1, max=2**16),
             "kernel_size": Key("int", min=1, max=2**10), "activation": Key("str"),
             "marshall_sign": Key("bool"), "zero_magnetization": Key("bool"), "cached": Key("bool"),
             "output_scale": Key("number"), "phase_scale": Key("number"), "phase": Key("bool"),
             "dtype": Key("str", choices=_DTYPES)},
}

SAMPLER = {
    "kind": Key("str", "metropolis_local", choices=("metropolis_local", "metropolis_exchange", "gibbs", "direct")),
    "n_samples": Key("int", 1024, min=1, max=2**40),
    "n_chains": Key("int", 16, min=1, max=2**40),
    "n_discard": Key("int", 16, min=0, max=10**9),
    "sweep_size": Key("int", min=1, max=10**9),
}

OPTIMIZER = {
    "kind": Key("str", "sgd", choices=("sgd", "adam")),
    "learning_rate": Key("number", 0.01, min=0, min_open=True),
    "schedule": Key("str", choices=("constant", "linear", "cosine")),
    "learning_rate_final": Key("number", min=0),
    # horizon of the learning-rate schedule in absolute steps (default: n_steps at the first start)
    "schedule_steps": Key("int", min=1, max=10**9),
    "sr": Key("bool", True),
    "diag_shift": Key("number", 0.01, min=0),
    "diag_shift_final": Key("number", min=0, min_open=True),
    # horizon of the diag_shift decay (default: n_steps at the first start)
    "diag_shift_steps": Key("int", min=1, max=10**9),
    "solver": Key("str", choices=("cg", "dense", "minsr")),
    "minsr_rcond": Key("number", min=0),  # minsr: pseudo-inverse cut of T's eigenvalues (relative; 0: Cholesky)
    "minsr_holomorphic": Key("bool"),  # minsr: complex N x N form (complex parameters, holomorphic network)
    "cg_maxiter": Key("int", min=1, max=10**6),
    "cg_tol": Key("number", min=0, min_open=True),
    "b1": Key("number", min=0, max=0.999999),
    "b2": Key("number", min=0, max=0.999999),
}

OBSERVABLES = {
    "magnetization": Key("bool", True),  # m, |m|, m^2 at every step
    # final evaluation only (distnqs.observables): <sigma^x>, correlations against distance, S(k)
    "sx": Key("bool", False),
    "correlations": Key("bool", False),
    "structure_factor": Key("bool", False),
}

RUN = {
    "chunk_size": Key("int", 0, min=0, max=2**40),  # 0: no chunking
    "checkpoint_every": Key("int", 50, min=0, max=10**9),
    "keep_checkpoints": Key("int", 2, min=1, max=10**6),
    "print_every": Key("int", 10, min=0, max=10**9),
    "reference": Key("bool", True),  # exact diagonalization when N <= 20
    "eval_steps": Key("int", 4, min=0, max=10**6),  # extra sampling-only steps with the final parameters for summary.json
    # start from another run's parameters (run directory: newest valid checkpoint; or a checkpoint
    # file) with the same [lattice] and parameter shapes, e.g. a plain RBM into the same RBM with
    # symmetries; only a fresh start reads it, a resume continues from the run's own checkpoints
    "init_from": Key("str"),
    "fast_update": Key("bool", True),  # use the ansatz's look-up tables (RBM) in Metropolis moves and local energies
    "device": Key("str", "auto", choices=("auto", "cpu", "gpu")),  # "gpu" refuses a CPU backend, "cpu" keeps jax off a GPU
    # divergence guard (distnqs.optim.guard, distnqs.driver): see the driver's docstring
    "on_divergence": Key("str", "stop", choices=("stop", "rollback")),
    "max_rollbacks": Key("int", 3, min=0, max=10**6),
    "consistency_every": Key("int", 100, min=0, max=10**9),  # steps between parameter-checksum comparisons of the ranks (0: never)
    "step_guard": Key("str", "rescale", choices=("rescale", "reject")),  # what to do with an update above a cap
    "max_fs_length": Key("number", 10.0, min=0),  # cap on the Fubini-Study length eta^2 x^T S x of an SR update (0: none); demo peaks at 3.9
    "max_update_norm": Key("number", 0.0, min=0),  # cap on |update| (0: none)
    "variance_alarm": Key("number", 20.0, min=0),  # reject a step whose variance exceeds this times the running median (0: off)
}

# [dynamics] (distnqs evolve, distnqs.dynamics): real- or imaginary-time t-VMC. Resolved (defaults
# filled, n_steps = t_final / dt) only when the table is given; a [run]-only config has none.
DYNAMICS = {
    "initial_state": Key("str", "plus_x", choices=("plus_x", "checkpoint")),
    "checkpoint": Key("str"),  # run directory (newest valid checkpoint) or checkpoint file of a ground-state run
    "t_final": Key("number", REQUIRED, min=0, min_open=True),
    "dt": Key("number", REQUIRED, min=0, min_open=True),  # one loop step (log row) of simulated time
    "integrator": Key("str", "rk4", choices=("euler", "heun", "rk4", "rk23")),
    "rk23_tol": Key("number", 1e-3, min=0, min_open=True),  # rk23: error per substep in the S-metric
    "max_substeps": Key("int", 64, min=1, max=10**6),  # rk23: substeps (accepted or not) per dt at most
    "regularization": Key("str", "diag_shift", choices=("diag_shift", "snr")),
    "diag_shift": Key("number", 1e-4, min=0),
    "solver": Key("str", "dense", choices=("cg", "dense")),  # diag_shift: dense Cholesky or matrix-free CG
    "cg_maxiter": Key("int", 500, min=1, max=10**6),
    "cg_tol": Key("number", 1e-10, min=0, min_open=True),
    "rcond": Key("number", 1e-14, min=0, min_open=True),  # snr: eigenvalues below rcond * max are dropped
    "rcond_smooth": Key("number", 1e-8, min=0),  # snr: smooth cut-off of small eigenvalues (relative)
    "snr_cutoff": Key("number", 4.0, min=0),  # snr: Schmitt & Heyl's signal-to-noise threshold (0: none)
    # monte_carlo: the [sampler]'s samples; full_enumeration: every configuration weighted by |psi|^2 (N <= 20)
    "sampling": Key("str", "monte_carlo", choices=("monte_carlo", "full_enumeration")),
    "plus_x_weight": Key("number", 0.5, min=0, min_open=True, max=10),  # plus_x: RBM kernel diagonal (see distnqs.dynamics.evolve)
    "imaginary": Key("bool", False),  # imaginary time: S dtheta/dtau = -F (a ground-state method)
    "exact": Key("bool", True),  # store the exact evolution (N <= 16) in exact.json for comparison and plots
}
DYNAMICS_PHYSICS = ("initial_state", "checkpoint", "dt", "imaginary")  # part of the physics hash

FILLED_TABLES = {"sampler": SAMPLER, "optimizer": OPTIMIZER, "observables": OBSERVABLES, "run": RUN}

DEFAULTS = {
    **schema.defaults(SCALARS_SCHEMA),
    "ansatz": {"model": "rbm", "alpha": 1},
    **{name: schema.defaults(table) for name, table in FILLED_TABLES.items()},
}
RUN_OPTIONS = set(RUN)
OBSERVABLE_OPTIONS = set(OBSERVABLES)


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


def _check_hamiltonian(table: dict) -> None:
    model = table.get("model")
    if model is None:
        raise ConfigError("[hamiltonian] needs model (one of: " + ", ".join(HAMILTONIANS) + ")")
    if not isinstance(model, str) or model not in HAMILTONIANS:
        raise ConfigError(f"unknown hamiltonian model {model!r}; choose one of: {', '.join(HAMILTONIANS)}")
    rest = {k: v for k, v in table.items() if k != "model"}
    schema.check_table("[hamiltonian]", HAMILTONIANS[model], rest, fill=False, unknown=f"[hamiltonian] model {model} has no option")


def _check_ansatz(table: dict) -> None:
    model = table.get("model")
    if model is None:
        raise ConfigError('[ansatz] needs model (e.g. model = "rbm")')
    if not isinstance(model, str):
        raise ConfigError(f"[ansatz] model must be a string, got {model!r}")
    if model == "naqs" and (table.get("symmetries", "none") != "none" or table.get("spin_flip", "none") != "none"):
        raise ConfigError("[ansatz] symmetries need a non-autoregressive ansatz (rbm, ffnn, cnn, netket.<Name>): "
                          "a sum over group images of naqs is no longer normalized for direct sampling")
    if model.startswith("netket."):
        # the netket model's constructor checks its own options; the symmetry keys are distnqs's
        schema.check_table("[ansatz]", _SYMMETRY, {k: table[k] for k in _SYMMETRY if k in table}, fill=False)
        return
    if model not in ANSATZES:
        return  # build_model names the known models
    rest = {k: v for k, v in table.items() if k != "model"}
    schema.check_table("[ansatz]", ANSATZES[model], rest, fill=False, unknown=f"ansatz {model} has no option")


def _check_lattice(table: dict) -> None:
    schema.check_table("[lattice]", LATTICE, table, fill=False)
    Lx = table.get("Lx", table.get("L"))
    if Lx is None:
        raise ConfigError("[lattice] needs Lx (or L)")
    Ly = table.get("Ly", 1 if table.get("kind", "square") == "chain" else Lx)
    if Lx * Ly > 2**24:
        raise ConfigError(f"[lattice] {Lx}x{Ly} = {Lx * Ly} sites is more than distnqs supports ({2**24})")


def resolve(raw: dict) -> dict:
    """Check every key against the schema and fill defaults; returns a new dict."""
    if not isinstance(raw, dict):
        raise ConfigError("a config is a TOML document (a table of keys)")
    unknown = set(raw) - set(TABLES) - set(SCALARS)
    if unknown:
        raise ConfigError(f"unknown config key {sorted(unknown)[0]!r} (known: {', '.join(list(SCALARS) + list(TABLES))})")
    for table in TABLES:
        if table in raw and not isinstance(raw[table], dict):
            raise ConfigError(f"[{table}] must be a table")
    for table in ("lattice", "hamiltonian"):
        if table not in raw:
            raise ConfigError(f"the config needs a [{table}] table")
    schema.check_table("", SCALARS_SCHEMA, {k: v for k, v in raw.items() if k in SCALARS}, fill=False)
    cfg = _merge(DEFAULTS, raw)
    _check_lattice(cfg["lattice"])
    _check_hamiltonian(cfg["hamiltonian"])
    _check_ansatz(cfg["ansatz"])
    for name, table in FILLED_TABLES.items():
        cfg[name] = schema.check_table(f"[{name}]", table, cfg[name], fill=True)
    if "dynamics" in cfg:
        cfg["dynamics"] = _check_dynamics(cfg["dynamics"])
        cfg["n_steps"] = dynamics_steps(cfg["dynamics"])
    return cfg


def dynamics_steps(dyn: dict) -> int:
    """Number of loop steps of an evolution: ``t_final / dt`` (an integer, checked)."""
    n = dyn["t_final"] / dyn["dt"]
    if abs(n - round(n)) > 1e-9 * max(1.0, n) or round(n) < 1:
        raise ConfigError(f"[dynamics] t_final = {dyn['t_final']} is not a whole number of steps dt = {dyn['dt']}")
    return int(round(n))


def _check_dynamics(table: dict) -> dict:
    dyn = schema.check_table("[dynamics]", DYNAMICS, table, fill=True)
    if dyn["initial_state"] == "checkpoint" and "checkpoint" not in dyn:
        raise ConfigError('[dynamics] initial_state = "checkpoint" needs checkpoint = "<run directory or checkpoint file>"')
    if dyn["initial_state"] != "checkpoint" and "checkpoint" in dyn:
        raise ConfigError('[dynamics] checkpoint is only used with initial_state = "checkpoint"')
    return dyn


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
    physics = {k: cfg.get(k) for k in PHYSICS_KEYS}
    if cfg.get("dynamics") is not None:  # an evolution: its initial state, time step and kind of time too
        physics["dynamics"] = {k: cfg["dynamics"].get(k) for k in DYNAMICS_PHYSICS}
    blob = json.dumps(physics, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def full_hash(cfg: dict) -> str:
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()


def dumps_toml(cfg: dict) -> str:
    """The resolved config as TOML (``None`` values dropped: TOML has no null)."""
    import tomli_w

    def clean(d):
        return {k: clean(v) if isinstance(v, dict) else v for k, v in d.items() if v is not None}

    return tomli_w.dumps(clean(cfg))


# ---------------------------------------------------------------------------
# Resume: schedules in absolute steps, changed keys listed and recorded
# ---------------------------------------------------------------------------

HISTORY_FILE = "config_history.jsonl"
RESUME_TABLES = ("optimizer", "sampler", "run", "dynamics")
# optimizer key of a schedule's horizon -> (is the schedule active?, what it is in words)
HORIZONS = {
    "schedule_steps": (lambda opt: opt.get("schedule", "constant") != "constant", "learning-rate schedule"),
    "diag_shift_steps": (lambda opt: bool(opt.get("sr")) and opt.get("diag_shift_final") is not None, "diag_shift decay"),
}


def _horizon(opt: dict, key: str, n_steps: int) -> int:
    return int(opt.get(key, n_steps))


def resume_plan(cfg: dict, previous: dict | None, reschedule: bool = False) -> tuple[dict, list[str], dict]:
    """The config of this start with every schedule's horizon in absolute steps.

    A first start (``previous`` None) or ``reschedule`` puts each active
    schedule's horizon at ``n_steps``; a resume keeps the horizons of the
    previous start (``previous``: its resolved config), so a longer
    ``n_steps`` continues with each schedule's final value. A horizon given
    in the config itself always wins. Returns (cfg, notes, changes) with
    ``changes`` = {"[table] key": (old, new)} for ``n_steps`` and the
    ``[optimizer]`` / ``[sampler]`` / ``[run]`` keys that differ from ``previous``.
    """
    cfg = copy.deepcopy(cfg)
    opt = cfg["optimizer"]
    n_steps = cfg["n_steps"]
    notes = []
    for key, (active, what) in HORIZONS.items():
        if not active(opt) or key in opt:
            continue
        if previous is None or reschedule:
            opt[key] = max(1, n_steps)
            continue
        opt[key] = max(1, _horizon(previous.get("optimizer", {}), key, previous.get("n_steps", n_steps)))
        if opt[key] < n_steps:
            notes.append(
                f"n_steps {previous.get('n_steps')} -> {n_steps}: the {what} ends at step {opt[key]} and keeps its final "
                f"value for steps {opt[key]}-{n_steps - 1}; use --reschedule to stretch it over {n_steps} steps"
            )
    changes = {}
    if previous is not None:
        if previous.get("n_steps") != n_steps:
            changes["n_steps"] = (previous.get("n_steps"), n_steps)
        for table in RESUME_TABLES:
            old, new = previous.get(table, {}), cfg.get(table, {})
            for key in sorted(set(old) | set(new)):
                if key in HORIZONS and key not in old and new.get(key) == previous.get("n_steps"):
                    continue  # a run from before horizons were recorded: the same schedule
                if old.get(key) != new.get(key):
                    changes[f"[{table}] {key}"] = (old.get(key), new.get(key))
    return cfg, notes, changes


def previous_config(outdir) -> dict | None:
    """The resolved config of the run in ``outdir`` when there is one to resume (else None)."""
    from distnqs.io import checkpoint

    outdir = Path(outdir)
    if not (outdir / "config.toml").is_file() or not checkpoint.list_checkpoints(outdir):
        return None
    try:
        return load(outdir / "config.toml")
    except ConfigError:
        return None  # reported by the run-directory check


def describe_changes(changes: dict) -> list[str]:
    def show(v):
        return "(unset)" if v is None else repr(v)

    return [f"{key} changed on resume: {show(old)} -> {show(new)}" for key, (old, new) in changes.items()]


def record_changes(outdir, step: int, changes: dict) -> None:
    """Append one line ``{"step", "time", "changes": {key: [old, new]}}`` to the run's config history."""
    import time

    line = json.dumps({"step": step, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                       "changes": {k: list(v) for k, v in changes.items()}}, default=str)
    with open(Path(outdir) / HISTORY_FILE, "a") as f:
        f.write(line + "\n")
        f.flush()
