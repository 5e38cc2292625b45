"""The run lifecycle and the optimization loop: resume, step, log, checkpoint, summary.

:func:`run_lifecycle` is the one lifecycle every driver uses: ``run`` here
(a :class:`VMCJob`) and ``evolve`` (:class:`distnqs.dynamics.evolve.EvolveJob`);
a job supplies its state, jitted step, log row, own policies and summary.
``run(cfg, outdir)`` is what ``distnqs run CONFIG --outdir D`` calls on every
rank. It

1. builds the problem (:mod:`distnqs.problem`),
2. prepares ``D`` on rank 0 (``--restart`` moves an old run aside, never
   deletes it) and refuses a changed physics config,
3. resumes from the newest valid checkpoint (falling back past damaged ones),
4. runs :func:`optimization_loop`: any jitted step function, followed after
   every step by small policy objects, in this order: :class:`LogRow` (one
   ``log.h5`` row), :class:`DivergenceGuard`, :class:`ProgressLine`,
   :class:`ConsistencyCheck`, :class:`StopRequest`, :class:`CheckpointCadence`
   (every ``checkpoint_every`` steps, at the end, and after a SIGTERM / SIGINT /
   SIGUSR1), :class:`FaultInjection` (tests), :class:`StopOnRequest`,
5. measures the final parameters' energy over ``eval_steps`` extra batches and
   writes ``summary.json`` (strict JSON: ``null`` for a missing or non-finite
   number; energy, per site, reference from exact diagonalization when N <= 20).

Exit statuses (``run`` returns them; the CLI exits with them):

- 0 (:data:`EXIT_OK`): finished.
- 75 (:data:`EXIT_SIGNALLED`, EX_TEMPFAIL): stopped by a signal after writing a
  checkpoint; rerun the same command to resume.
- 65 (:data:`EXIT_DIVERGED`, EX_DATAERR): a non-finite energy, variance,
  gradient, update or parameter (checked inside the step by
  :mod:`distnqs.optim.guard`), with ``on_divergence = "stop"`` or after
  ``max_rollbacks`` rollbacks. One line names the step, the quantity and its
  value. Nothing of that step is saved and no checkpoint is written with
  non-finite numbers, so the newest checkpoint is the last good state; do not
  requeue unchanged (the run is deterministic and would diverge again).
- 70 (:data:`EXIT_INCONSISTENT`, EX_SOFTWARE): the ranks' parameter checksums
  differ (checked every ``consistency_every`` steps).
- 2: a user error (bad config, damaged files), from the CLI; 74: I/O error.

Before the first step the run directory is checked for writability and room
for one checkpoint plus the log. A failed write (disk full, quota, read-only or
removed directory) raises :class:`distnqs.errors.RunIOError` on every rank:
``distnqs run`` prints one line and exits with :data:`EXIT_IO_ERROR`; the
previous checkpoints are untouched and the same command resumes.

A run is a pure function of (config, number of ranks): the random key of step
``t`` on rank ``r`` is derived from (seed, r, t), so a resumed run with the same
number of ranks reproduces an uninterrupted one bit for bit.
"""

from __future__ import annotations

import json
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from distnqs import comm
from distnqs import config as config_mod
from distnqs import devices
from distnqs.errors import CheckpointError, ConfigError, DistnqsWarning
from distnqs.io import checkpoint
from distnqs.io import lock as run_lock
from distnqs.io.files import atomic_write_json, atomic_write_text, make_run_dir
from distnqs.io.log import COLUMNS as LOG_COLUMNS
from distnqs.io.log import StepLog
from distnqs.operators.exact import MAX_EXACT_SITES, ground_state_energy
from distnqs.problem import Problem, build_problem

EXIT_OK = 0
EXIT_SIGNALLED = 75  # EX_TEMPFAIL: stopped by a signal after writing a checkpoint; rerun to resume
# EX_DATAERR: the run's numbers went bad (non-finite energy, variance, gradient, update or
# parameters). Rerunning the same command repeats it (a run is deterministic), so a batch script
# must not requeue: the config needs a change (learning rate, diagonal shift, on_divergence).
EXIT_DIVERGED = 65
# EX_SOFTWARE: the ranks hold different parameters (a bug or a hardware fault), found by the
# consistency check; no checkpoint of that state is written.
EXIT_INCONSISTENT = 70
EXIT_IO_ERROR = 74  # EX_IOERR: a write to the run directory failed; free space / fix it, rerun to resume
STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR1")
RUN_FILES = ("config.toml", "log.h5", "summary.json", "reference.json", "observables.h5")


class _StopFlag:
    """Records that a stop signal arrived; the loop checks it after every step."""

    def __init__(self):
        self.signal = None
        self._previous = {}

    def __enter__(self):
        for name in STOP_SIGNALS:
            sig = getattr(signal, name, None)
            if sig is not None:
                try:
                    self._previous[sig] = signal.signal(sig, self._handle)
                except ValueError:  # not the main thread
                    pass
        return self

    def _handle(self, signum, frame):
        self.signal = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def versions() -> dict:
    import flax
    import h5py
    import netket
    import optax

    import distnqs

    out = {
        "distnqs": distnqs.__version__,
        "jax": jax.__version__,
        "netket": netket.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "h5py": h5py.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
    }
    try:
        import mpi4jax

        out["mpi4jax"] = mpi4jax.__version__
    except ImportError:
        pass
    return out


# ---------------------------------------------------------------------------
# Run directory (rank 0 only, called through comm.on_root)
# ---------------------------------------------------------------------------

def _prepare_outdir(outdir: Path, cfg: dict, restart: bool) -> str | None:
    """Create / check the run directory; returns where an old run was moved, if any."""
    moved = None
    if outdir.exists() and not outdir.is_dir():
        raise ConfigError(f"--outdir {outdir} exists and is not a directory")
    if outdir.is_dir() and any(outdir.iterdir()):
        is_run = (outdir / "config.toml").exists() or checkpoint.list_checkpoints(outdir)
        if not is_run:
            raise ConfigError(f"--outdir {outdir} is not empty and holds no distnqs run; choose another directory")
        if restart:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            aside = outdir.with_name(f"{outdir.name}.old-{stamp}")
            k = 1
            while aside.exists():
                aside = outdir.with_name(f"{outdir.name}.old-{stamp}-{k}")
                k += 1
            outdir.rename(aside)
            moved = str(aside)
        else:
            old_cfg = outdir / "config.toml"
            if old_cfg.exists():
                try:
                    previous = config_mod.load(old_cfg)
                except ConfigError as exc:
                    raise ConfigError(f"{old_cfg} is damaged ({exc}); use --restart to start over (the old run is kept)") from exc
                _check_same_physics(previous, cfg, outdir)
    make_run_dir(outdir)
    atomic_write_text(outdir / "config.toml", config_mod.dumps_toml(cfg))
    return moved


def _check_same_physics(previous: dict, cfg: dict, outdir: Path) -> None:
    for key in config_mod.PHYSICS_KEYS:
        if previous.get(key) != cfg.get(key):
            raise ConfigError(
                f"{outdir} holds a run with a different [{key}] ({previous.get(key)} != {cfg.get(key)}); "
                "use another --outdir, or --restart to move the old run aside"
            )
    old_dyn, new_dyn = previous.get("dynamics") or {}, cfg.get("dynamics") or {}
    for key in config_mod.DYNAMICS_PHYSICS:
        if ("dynamics" in previous) != ("dynamics" in cfg) or old_dyn.get(key) != new_dyn.get(key):
            raise ConfigError(
                f"{outdir} holds a run with a different [dynamics] {key} ({old_dyn.get(key)} != {new_dyn.get(key)}); "
                "use another --outdir, or --restart to move the old run aside"
            )


def _reference(problem: Problem, outdir: Path | None) -> dict | None:
    """Exact ground-state energy for N <= 20 (cached in reference.json)."""
    if not problem.cfg["run"].get("reference", True) or problem.n_sites > MAX_EXACT_SITES:
        return None
    cache = outdir / "reference.json" if outdir is not None else None
    phash = config_mod.physics_hash(problem.cfg)
    if cache is not None and cache.exists():
        try:
            ref = json.loads(cache.read_text())
            if ref.get("physics_hash") == phash:
                return ref
        except (OSError, ValueError):
            pass
    e0 = ground_state_energy(problem.hamiltonian)
    ref = {
        "energy": e0,
        "energy_per_site": e0 / problem.n_sites,
        "source": "exact diagonalization (netket.exact.lanczos_ed)",
        "physics_hash": phash,
    }
    if cache is not None:
        atomic_write_json(cache, ref)
    return ref


# ---------------------------------------------------------------------------
# State <-> checkpoint
# ---------------------------------------------------------------------------

def _to_numpy_leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def _unflatten_like(template, leaves, what: str):
    t_leaves, treedef = jax.tree_util.tree_flatten(template)
    if len(t_leaves) != len(leaves):
        raise CheckpointError(f"checkpoint {what} has {len(leaves)} arrays, this run needs {len(t_leaves)}")
    out = []
    for t, x in zip(t_leaves, leaves):
        t = np.asarray(t)
        if t.shape != x.shape or t.dtype != x.dtype:
            raise CheckpointError(f"checkpoint {what} holds {x.dtype}{list(x.shape)} where this run needs {t.dtype}{list(t.shape)}")
        out.append(jnp.asarray(x))
    return jax.tree_util.tree_unflatten(treedef, out)


def params_from_checkpoint(path, template, cfg: dict, option: str, same_tables: tuple[str, ...]):
    """Parameters of another run's checkpoint (a run directory: its newest valid checkpoint; or a
    checkpoint file) in the structure of ``template``; ``(params, source)`` with ``source`` =
    ``{"path", "step"}``. The source run must have the same config tables ``same_tables``
    and parameters of the same shapes and dtypes; ``option`` names the config key in errors."""
    path = Path(path)

    def read():
        if path.is_dir():
            saved = checkpoint.read_newest_valid(path)
            if saved is None:
                raise CheckpointError(f"{option} {str(path)!r} holds no checkpoint")
            return saved
        if not path.is_file():
            raise ConfigError(f"{option} {str(path)!r} not found")
        return checkpoint.read(path)

    saved = comm.on_root(read)
    source = config_mod.parse(saved["attrs"]["config"], str(saved["path"]))
    for table in same_tables:
        if source.get(table) != cfg.get(table):
            raise ConfigError(f"{option} {saved['path']} has a different [{table}] ({source.get(table)} != {cfg.get(table)})")
    try:
        params = _unflatten_like(template, saved["params"], "parameters")
    except CheckpointError as exc:
        raise ConfigError(f"{option} {saved['path']}: {exc} (same network and sizes needed)") from exc
    return params, {"path": str(saved["path"]), "step": int(saved["step"])}


def _restore_sampler(template, saved_per_rank):
    """This rank's sampler state; chains are redistributed if the rank count changed."""
    n_saved = len(saved_per_rank)
    if n_saved == comm.size():
        return _unflatten_like(template, saved_per_rank[comm.rank()], "sampler state"), None
    t_leaves, treedef = jax.tree_util.tree_flatten(template)
    pooled = []
    for i, t in enumerate(t_leaves):
        t = np.asarray(t)
        if t.ndim == 0:
            pooled.append(jnp.zeros_like(t))
            continue
        pool = np.concatenate([np.asarray(rank_leaves[i]) for rank_leaves in saved_per_rank], axis=0)
        if pool.shape[1:] != t.shape[1:] or pool.dtype != t.dtype:
            raise CheckpointError("checkpoint sampler state does not fit this run's sampler")
        idx = (np.arange(t.shape[0]) + comm.rank() * t.shape[0]) % pool.shape[0]
        pooled.append(jnp.asarray(pool[idx]))
    note = (
        f"checkpoint was written by {n_saved} rank(s), this run has {comm.size()}: parameters and optimizer "
        "state restored, Markov chains redistributed (and re-thermalized by the burn-in sweeps); "
        "the run continues but is not bit-identical to one with the original rank count"
    )
    return jax.tree_util.tree_unflatten(treedef, pooled), note


def _save(outdir: Path, step: int, params, opt_state, sampler_state, cfg: dict, keep: int) -> None:
    """Gather every rank's sampler state and write one checkpoint on rank 0 (all ranks call this)."""
    gathered = comm.gather_object(_to_numpy_leaves(sampler_state))
    attrs = {
        "config": config_mod.dumps_toml(cfg),
        "physics_hash": config_mod.physics_hash(cfg),
        "versions": versions(),
    }
    comm.on_root(
        checkpoint.write, outdir, step, _to_numpy_leaves(params), _to_numpy_leaves(opt_state), gathered, attrs, keep
    )


def _inject_fault(done: int) -> None:
    """Test hook: crash this rank after step ``done`` when asked by the environment.

    ``DISTNQS_FAULT_KILL_AT_STEP=k`` sends SIGKILL to itself (a node dying);
    ``DISTNQS_FAULT_RAISE_AT_STEP=k`` raises (a bug on one rank);
    ``DISTNQS_FAULT_RANK`` picks the rank (default 0);
    ``DISTNQS_FAULT_STEP_SECONDS=s`` makes every rank sleep ``s`` seconds after
    every step (a slow machine: the Slurm tests signal a run in mid-flight
    whatever the speed of the machine; results do not change). Used by the
    resume, abort and Slurm tests; never set in production.
    """
    import os

    pause = float(os.environ.get("DISTNQS_FAULT_STEP_SECONDS", "0") or 0)
    if pause > 0:
        time.sleep(pause)
    if int(os.environ.get("DISTNQS_FAULT_RANK", "0")) != comm.rank():
        return
    if os.environ.get("DISTNQS_FAULT_KILL_AT_STEP") == str(done):
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("DISTNQS_FAULT_RAISE_AT_STEP") == str(done):
        raise RuntimeError(f"injected fault on rank {comm.rank()} after step {done}")


# ---------------------------------------------------------------------------
# Progress display (rank 0)
# ---------------------------------------------------------------------------

def _fmt_seconds(s: float) -> str:
    if not np.isfinite(s):
        return "?"
    s = int(round(s))
    return f"{s // 3600}h{(s % 3600) // 60:02d}m" if s >= 3600 else (f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s")


# R-hat (Gelman-Rubin, split over the chains) above this in the final evaluation: warn that the
# chains disagree. Runs that mix end at 1.0-1.2 (a 2-step test run with few samples per chain at
# 1.51); a state collapsed onto a few configurations (Neel states of an RBM after a too large
# first step) sits at R-hat ~ 12 with every chain frozen.
R_HAT_WARN = 2.0


def _say(msg: str, quiet: bool = False) -> None:
    if comm.rank() == 0 and not quiet:
        print(msg, flush=True)


def _summary(problem: Problem, step: int, metrics: dict | None, reference: dict | None, status: str, wall: float) -> dict:
    n = problem.n_sites
    summary = {
        "status": status,
        "step": step,
        "n_steps": problem.cfg["n_steps"],
        "n_sites": n,
        "n_ranks": comm.size(),
        "n_parameters": problem.n_parameters,
        "n_samples_per_step": problem.step.n_samples_total,
        "energy": None,
        "energy_per_site": None,
        "energy_per_site_error": None,
        "observables": {},
        "reference": None,
        "physics_hash": config_mod.physics_hash(problem.cfg),
        "wall_time_s": wall,
    }
    if metrics is not None:
        e = metrics["energy"].to_dict()
        summary["energy"] = e
        summary["energy_per_site"] = e["mean"] / n
        summary["energy_per_site_error"] = e["error"] / n
        for key in ("m", "abs_m", "m2"):
            if key in metrics:
                summary["observables"][key] = {"mean": metrics[key].to_dict()["mean"], "error": metrics[key].to_dict()["error"]}
        if "acceptance" in metrics:  # not measured by a final evaluation alone
            summary["acceptance"] = float(metrics["acceptance"])
    if reference is not None:
        summary["reference"] = {
            "energy": reference["energy"],
            "energy_per_site": reference["energy_per_site"],
            "source": reference["source"],
            "relative_error": None if summary["energy"] is None else abs((summary["energy"]["mean"] - reference["energy"]) / reference["energy"]),
        }
    return summary


def _final_evaluation(problem: Problem, params, sampler_state, n_steps: int, eval_steps: int, quiet: bool) -> dict:
    r"""Energy (and observables) of the final parameters from ``eval_steps`` extra batches.

    Batch means are averaged, :math:`\bar x = \frac1K\sum_k \bar x_k`, with
    error :math:`\sqrt{\sum_k \epsilon_k^2}/K` (independent batches).
    """
    from distnqs.estimators.stats import combine_batches

    evaluate = jax.jit(problem.step.evaluate)
    batches = []
    for k in range(eval_steps):
        sampler_state, metrics = evaluate(params, sampler_state, jnp.asarray(n_steps + k, jnp.int32))
        batches.append(jax.device_get(metrics))
    out = {key: combine_batches([b[key] for b in batches]) for key in batches[0]}
    _say(f"distnqs: final evaluation over {eval_steps} x {problem.step.n_samples_total} samples", quiet)
    return out


# ---------------------------------------------------------------------------
# Policies: small objects called after every step (NetKet-callback style)
# ---------------------------------------------------------------------------

class Outcome(NamedTuple):
    """Why the loop ended early: status for summary.json, exit code, completed steps."""

    status: str
    code: int
    step: int


class StepContext:
    """What a policy sees after one step (``step`` = its index, ``done`` = steps completed)."""

    def __init__(self, step: int, state: tuple, metrics: dict, seconds: float, n_steps: int, row_fn=None):
        self.row_fn = row_fn or vmc_row
        self.step, self.done, self.state, self.metrics, self.seconds, self.n_steps = step, step + 1, state, metrics, seconds, n_steps
        self.stop_requested = False
        self.outcome: Outcome | None = None
        self.rollback: tuple | None = None  # (step, state, event) to continue from
        self._row = None

    @property
    def row(self) -> dict:
        """The log row of this step (float columns of the job's log), built once by ``row_fn``."""
        if self._row is None:
            self._row = self.row_fn(self)
        return self._row


def energy_columns(e) -> dict:
    """The energy statistics columns of a log row (shared by every job) from a :class:`Stats`."""
    return {
        "energy_mean": float(np.real(e.mean)),
        "energy_mean_imag": float(np.imag(e.mean)),
        "energy_error": float(e.error_of_mean),
        "energy_variance": float(e.variance),
        "tau_corr": float(e.tau_corr),
        "R_hat": float(e.R_hat),
    }


def vmc_row(ctx) -> dict:
    """The ``log.h5`` row of one VMC step (columns of :data:`distnqs.io.log.COLUMNS`)."""
    m = ctx.metrics
    guard = m.get("guard", {})
    row = {
        "step": ctx.step,
        **energy_columns(m["energy"]),
        "acceptance": float(m["acceptance"]),
        "learning_rate": float(m["learning_rate"]),
        "seconds_per_step": ctx.seconds,
        "samples_per_second": m.get("n_samples_total", np.nan) / ctx.seconds,
        "update_norm": float(guard.get("update_norm", np.nan)),
        "fs_length": float(guard.get("fs_length", np.nan)),
        "guard_action": float(guard.get("action", 0)),
        "rollbacks": float(ctx.state[1][1].n_rollbacks) if isinstance(ctx.state[1], tuple) and hasattr(ctx.state[1][1], "n_rollbacks") else 0.0,
    }
    for key in ("m", "abs_m", "m2"):
        if key in m:
            row[key] = float(np.real(m[key].mean))
    return row


def optimization_loop(step_fn, state: tuple, start: int, n_steps: int, policies, row_fn=None) -> tuple:
    """Run ``step_fn(*state, t) -> (*state, metrics)`` for ``t = start..n_steps-1``.

    After each step every policy's ``after_step(ctx)`` is called in order; a
    policy ends the run by setting ``ctx.outcome`` or rewinds it by setting
    ``ctx.rollback = (step, state, event)`` (then each policy's optional
    ``on_rollback(step, event)`` is called). Returns ``(completed steps, state,
    metrics of the last completed step or None, outcome or None)``. ``row_fn(ctx)``
    builds ``ctx.row`` (default :func:`vmc_row`).
    """
    step, metrics, outcome = start, None, None
    while step < n_steps and outcome is None:
        t0 = time.perf_counter()
        *new_state, new_metrics = step_fn(*state, jnp.asarray(step, jnp.int32))
        ctx = StepContext(step, tuple(new_state), jax.device_get(new_metrics), time.perf_counter() - t0, n_steps, row_fn)
        for policy in policies:
            policy.after_step(ctx)
            if ctx.outcome is not None or ctx.rollback is not None:
                break
        if ctx.rollback is not None:
            step, state, event = ctx.rollback
            for policy in policies:
                getattr(policy, "on_rollback", lambda *a: None)(step, event)
            continue
        outcome = ctx.outcome
        if outcome is None or outcome.step > step:  # the step completed (e.g. stopped by a signal after it)
            step, state, metrics = step + 1, ctx.state, ctx.metrics
    return step, state, metrics, outcome


class LogRow:
    """One ``log.h5`` row per step; a rollback cuts the rows it undoes and records the event.

    The log lives on rank 0 (``log`` is ``None`` elsewhere); every rank calls the
    policy and the write goes through :func:`comm.on_root`, so a failed write
    (disk full, read-only directory) raises on every rank, not only on rank 0.
    """

    def __init__(self, log, n_samples_total: int, enabled: bool):
        self.log, self.n_samples_total, self.enabled = log, n_samples_total, enabled

    def after_step(self, ctx):
        ctx.metrics.setdefault("n_samples_total", self.n_samples_total)
        if self.enabled:
            row = ctx.row
            comm.on_root(lambda: self.log.append(row))

    def on_rollback(self, step, event):
        if self.enabled:
            comm.on_root(lambda: (self.log.truncate(step), self.log.record_event(event)))


class ProgressLine:
    """The ``[done/n] E = ...`` line every ``print_every`` steps (rank 0)."""

    def __init__(self, problem: Problem, reference, start: int, n_steps: int, print_every: int, quiet: bool):
        self.problem, self.reference, self.start, self.n_steps = problem, reference, start, n_steps
        self.print_every, self.quiet, self.ema = max(1, print_every), quiet, None

    def after_step(self, ctx):
        if ctx.step > self.start:  # the first step of a process includes compilation
            self.ema = ctx.seconds if self.ema is None else 0.9 * self.ema + 0.1 * ctx.seconds
        done, n_steps, row = ctx.done, self.n_steps, ctx.row
        if comm.rank() != 0 or self.quiet or not (done % self.print_every == 0 or done == n_steps or done == self.start + 1):
            return
        speed = f"{1.0 / self.ema:.1f} steps/s  ETA {_fmt_seconds((n_steps - done) * self.ema)}" if self.ema else "first step"
        # R-hat compares Markov chains; i.i.d. direct samples have none (one sample per "chain")
        rhat = f"  R̂ {row['R_hat']:.3f}" if self.problem.sampler.n_samples_per_chain > 1 else ""
        rel = ""
        if self.reference is not None:
            rel = f"  rel.err {abs((row['energy_mean'] - self.reference['energy']) / self.reference['energy']):.2e}"
        print(
            f"[{done:>{len(str(n_steps))}}/{n_steps}] E = {row['energy_mean']:.6f} ± {row['energy_error']:.6f}"
            f"  σ² = {row['energy_variance']:.4f}  acc {row['acceptance']:.2f}"
            f"{rhat}{rel}  {speed}",
            flush=True,
        )


class DivergenceGuard:
    """Acts on the step guard's report (:mod:`distnqs.optim.guard`).

    A non-finite quantity stops the run (``on_divergence = "stop"``, exit
    :data:`EXIT_DIVERGED`) or, with ``"rollback"``, restores the last
    checkpointed state with half the learning rate and twice the SR diagonal
    shift, at most ``max_rollbacks`` times. Rescaled or rejected steps are
    reported in one line each.
    """

    def __init__(self, mode: str, max_rollbacks: int, snapshots, quiet: bool):
        self.mode, self.max_rollbacks, self.snapshots, self.quiet = mode, max_rollbacks, snapshots, quiet
        self.events: list[dict] = []
        self.diverged: dict | None = None

    def after_step(self, ctx):
        from distnqs.optim.guard import ACTIONS, QUANTITIES

        report = ctx.metrics["guard"]
        code, action = int(report["code"]), int(report["action"])
        if code == 0:
            if action:
                _say(
                    f"distnqs: step {ctx.done}: {ACTIONS[action]} (variance {float(ctx.metrics['energy'].variance):.4g}, "
                    f"|update| {float(report['update_norm']):.3g}, Fubini-Study length {float(report['fs_length']):.3g}, "
                    f"scale {float(report['scale']):.3g})",
                    self.quiet,
                )
            return
        quantity, value = QUANTITIES[code], float(report["value"])
        guard = ctx.state[1][1]
        if self.mode == "rollback" and int(guard.n_rollbacks) < self.max_rollbacks:
            restored_step, (params, (tx_state, old_guard), sampler_state) = self.snapshots.last
            new_guard = old_guard._replace(
                lr_scale=guard.lr_scale * 0.5, shift_scale=guard.shift_scale * 2.0, n_rollbacks=guard.n_rollbacks + 1
            )
            event = {
                "step": ctx.done, "quantity": quantity, "value": value, "restored_step": restored_step,
                "learning_rate_scale": float(new_guard.lr_scale), "diag_shift_scale": float(new_guard.shift_scale),
            }
            self.events.append(event)
            _say(
                f"distnqs: diverged at step {ctx.done}: {quantity} = {value:.6g}; rolled back to step {restored_step} "
                f"with learning rate x{event['learning_rate_scale']:g} (rollback {int(new_guard.n_rollbacks)}/{self.max_rollbacks})"
            )
            ctx.rollback = (restored_step, (params, (tx_state, new_guard), sampler_state), event)
            return
        self.diverged = {"step": ctx.done, "quantity": quantity, "value": value}
        if comm.rank() == 0:
            after = f" after {int(guard.n_rollbacks)} rollback(s)" if self.mode == "rollback" else ""
            print(
                f"distnqs: diverged at step {ctx.done}: {quantity} = {value:.6g}{after}; nothing of this step was saved "
                f"(exit {EXIT_DIVERGED}: lower the learning rate, or set [run] on_divergence = \"rollback\")",
                file=sys.stderr, flush=True,
            )
        ctx.outcome = Outcome("diverged", EXIT_DIVERGED, ctx.step)


def params_checksum(params) -> int:
    """56-bit integer from the sha256 of every parameter's bytes (exact in int64)."""
    import hashlib

    h = hashlib.sha256()
    for leaf in _to_numpy_leaves(params):
        h.update(np.ascontiguousarray(leaf).tobytes())
    return int.from_bytes(h.digest()[:7], "little")


class ConsistencyCheck:
    """Every ``every`` steps the ranks compare a checksum of their parameters (min = max over ranks)."""

    def __init__(self, every: int):
        self.every = every

    def after_step(self, ctx):
        if not self.every or ctx.done % self.every or comm.size() == 1:
            return
        h = jnp.asarray(params_checksum(ctx.state[0]), jnp.int64)
        high, low = int(comm.max(h)), -int(comm.max(-h))
        if high != low:
            if comm.rank() == 0:
                print(
                    f"distnqs: ranks hold different parameters after step {ctx.done} (checksums {low:#x} .. {high:#x}); "
                    f"stopping without a checkpoint (exit {EXIT_INCONSISTENT})",
                    file=sys.stderr, flush=True,
                )
            ctx.outcome = Outcome("inconsistent", EXIT_INCONSISTENT, ctx.step)


class StopRequest:
    """Asks all ranks whether a stop signal arrived (or ``stop_after`` is reached): ``ctx.stop_requested``."""

    def __init__(self, flag, stop_after: int | None, start: int):
        self.flag, self.stop_after, self.start = flag, stop_after, start

    def after_step(self, ctx):
        ctx.stop_requested = comm.any_true(
            self.flag.signal is not None or (self.stop_after is not None and ctx.done - self.start >= self.stop_after)
        )


def _all_finite_leaves(tree) -> bool:
    return all(np.all(np.isfinite(x)) for x in _to_numpy_leaves(tree) if np.issubdtype(x.dtype, np.inexact))


class CheckpointCadence:
    """Writes a checkpoint every ``every`` steps, at the end and on a stop request; keeps the last
    written state in memory (``last``) for a rollback. Refuses non-finite state."""

    def __init__(self, outdir, cfg: dict, every: int, keep: int, start: int, state: tuple):
        self.outdir, self.cfg, self.every, self.keep = outdir, cfg, every, keep
        self.last = (start, state)

    def after_step(self, ctx):
        if not (ctx.stop_requested or ctx.done == ctx.n_steps or (self.every and ctx.done % self.every == 0)):
            return
        params, opt_state, sampler_state = ctx.state
        if not (_all_finite_leaves(params) and _all_finite_leaves(opt_state)):  # belt and braces: the step guard checks first
            _say(f"distnqs: diverged at step {ctx.done}: parameters = non-finite; no checkpoint written (exit {EXIT_DIVERGED})")
            ctx.outcome = Outcome("diverged", EXIT_DIVERGED, ctx.step)
            return
        if self.outdir is not None:
            _save(self.outdir, ctx.done, params, opt_state, sampler_state, self.cfg, self.keep)
        self.last = (ctx.done, ctx.state)


class FaultInjection:
    """Test hooks (:func:`_inject_fault`, and ``DISTNQS_FAULT_PERTURB_AT_STEP=k``: add 1e-9 to one
    parameter of rank ``DISTNQS_FAULT_RANK`` after step k)."""

    def after_step(self, ctx):
        import os

        _inject_fault(ctx.done)
        if os.environ.get("DISTNQS_FAULT_PERTURB_AT_STEP") == str(ctx.done) and int(os.environ.get("DISTNQS_FAULT_RANK", "0")) == comm.rank():
            params, opt_state, sampler_state = ctx.state
            leaves, treedef = jax.tree_util.tree_flatten(params)
            leaves[0] = leaves[0].at[(0,) * leaves[0].ndim].add(1e-9)
            ctx.state = (jax.tree_util.tree_unflatten(treedef, leaves), opt_state, sampler_state)


class StopOnRequest:
    """Ends the run after a stop request (the checkpoint was written by :class:`CheckpointCadence`)."""

    def __init__(self, flag):
        self.flag = flag

    def after_step(self, ctx):
        if ctx.stop_requested and ctx.done < ctx.n_steps:
            _say(f"distnqs: stopped after step {ctx.done} ({self.flag.signal or 'stop_after'}); checkpoint written, rerun the same command to resume")
            ctx.outcome = Outcome("stopped", EXIT_SIGNALLED, ctx.done)


# ---------------------------------------------------------------------------
# The run lifecycle (shared by every driver: ``run`` here, ``evolve`` in distnqs.dynamics)
# ---------------------------------------------------------------------------

def run_lifecycle(cfg: dict, outdir, make_job, *, quiet: bool = False, restart: bool = False,
                  stop_after: int | None = None, reschedule: bool = False) -> tuple[dict, int]:
    """Run (or resume) one job in a run directory; returns ``(summary, exit_code)``.

    What every driver shares, in order: device selection, the resume plan of
    the config (:func:`distnqs.config.resume_plan`), ``job = make_job(cfg)``,
    the run directory (``--restart`` moves an old run aside) and its lock,
    resume from the newest valid checkpoint (state ``(params, opt_state,
    sampler_state)``; ``opt_state`` is whatever the job's step carries:
    optimizer state for VMC, integrator state for t-VMC), the preflight check
    of the directory, :func:`optimization_loop` with the common policies
    around the job's own, ``summary.json`` and the lock's release.

    A job provides: ``n_steps``, ``n_samples_total``, ``log_columns``,
    ``init_state(fresh)`` (``fresh``: no checkpoint to resume from), ``step_fn()`` (jitted), ``row(ctx)`` (its log row),
    ``before_loop(outdir, start, quiet)``, ``policies(checkpoints, start,
    quiet)`` (inserted after :class:`LogRow`), ``summary(final_step, state,
    metrics, outcome, status, t_begin, quiet)`` and ``final_message(summary)``.
    """
    devices.select(cfg["run"].get("device", "auto"))
    previous = comm.on_root(config_mod.previous_config, outdir) if outdir is not None and not restart else None
    cfg, resume_notes, resume_changes = config_mod.resume_plan(cfg, previous, reschedule)
    job = make_job(cfg)
    outdir = Path(outdir) if outdir is not None else None
    comm.install_abort_hook()

    if outdir is not None:
        comm.on_root(run_lock.check_free, outdir)  # before --restart may move a live job's directory
        moved = comm.on_root(_prepare_outdir, outdir, cfg, restart)
        comm.on_root(run_lock.acquire, outdir)  # released below, at exit, or taken over when stale
        if moved:
            _say(f"distnqs: previous run moved to {moved}")
        saved = comm.on_root(checkpoint.read_newest_valid, outdir)
    else:
        saved = None

    params, opt_state, sampler_state = job.init_state(fresh=saved is None)
    start = 0
    if saved is not None:
        if saved["attrs"].get("physics_hash") != config_mod.physics_hash(cfg):
            raise ConfigError(f"checkpoint {saved['path']} belongs to a different problem; use --restart or another --outdir")
        params = _unflatten_like(params, saved["params"], "parameters")
        opt_state = _unflatten_like(opt_state, saved["opt_state"], "optimizer state")
        sampler_state, note = _restore_sampler(sampler_state, saved["sampler"])
        if note and comm.rank() == 0:
            warnings.warn(note, DistnqsWarning, stacklevel=2)
        start = saved["step"]
        _say(f"distnqs: resuming from {saved['path'].name} (step {start})", quiet)
    if saved is not None and resume_changes:
        comm.on_root(config_mod.record_changes, outdir, start, resume_changes)
    for line in resume_notes + config_mod.describe_changes(resume_changes):
        if comm.rank() == 0:
            print(f"distnqs: warning: {line}", file=sys.stderr, flush=True)

    job.before_loop(outdir, start, quiet)
    n_steps = job.n_steps
    holder = {}  # the log object lives on rank 0; only its success is broadcast

    def open_log():
        holder["log"] = StepLog(outdir / "log.h5", resume_step=start, columns=job.log_columns)

    if outdir is not None:
        from distnqs.io.preflight import check_run_directory

        comm.on_root(check_run_directory, outdir, params, opt_state, sampler_state, comm.size(), n_steps, cfg["run"]["keep_checkpoints"])
        comm.on_root(open_log)
    log = holder.get("log")
    run_cfg = cfg["run"]
    state = (params, opt_state, sampler_state)
    t_begin = time.perf_counter()
    try:
        with _StopFlag() as flag:
            checkpoints = CheckpointCadence(outdir, cfg, run_cfg["checkpoint_every"], run_cfg["keep_checkpoints"], start, state)
            policies = [
                LogRow(log, job.n_samples_total, outdir is not None),
                *job.policies(checkpoints, start, quiet),
                ConsistencyCheck(run_cfg["consistency_every"]),
                StopRequest(flag, stop_after, start),
                checkpoints,
                FaultInjection(),
                StopOnRequest(flag),
            ]
            final_step, state, metrics_host, outcome = optimization_loop(job.step_fn(), state, start, n_steps, policies, row_fn=job.row)
    finally:
        if log is not None:
            log.close()

    status = "finished" if final_step >= n_steps else (outcome.status if outcome is not None else "stopped")
    code = EXIT_OK if status == "finished" else (outcome.code if outcome is not None else EXIT_SIGNALLED)
    previous = None
    if metrics_host is None and outdir is not None and outcome is None:  # no step ran: perhaps nothing left to do
        previous = comm.on_root(lambda: json.loads((outdir / "summary.json").read_text()) if (outdir / "summary.json").exists() else None)
    if previous is not None and previous.get("step") == final_step and previous.get("status") == status:
        summary = previous  # the same command again on a finished run: report it, sample nothing
    else:
        # a run stopped at its last step (preempted in the final evaluation, or n_steps lowered to
        # where it stopped) gets its final evaluation now, as the uninterrupted run would have
        summary = job.summary(final_step, state, metrics_host, outcome, status, t_begin, quiet)
    if outdir is not None:
        comm.on_root(atomic_write_json, outdir / "summary.json", summary)
        comm.on_root(run_lock.release, outdir)
    if status == "finished":
        job.final_message(summary)
    return summary, code


INIT_SOURCE_FILE = "init_from.json"  # in the run directory: the checkpoint a fresh start read ([run] init_from)


def _init_source_record(path: Path, read_now: dict | None) -> dict | None:
    """The ``{"path", "step"}`` of the checkpoint this run started from: written to ``path`` at the
    fresh start that read it (``read_now``), read back from there on resume, so that a resumed
    run's summary names the same start as an uninterrupted one. A resume of a run that did not
    start from ``init_from`` (the key added later) warns that the key is ignored."""
    if read_now is not None:
        comm.on_root(atomic_write_json, path, read_now)
        return read_now

    def read():
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    recorded = comm.on_root(read)
    if recorded is None and comm.rank() == 0:
        warnings.warn("[run] init_from is read only at a fresh start; this run resumes from its own checkpoint",
                      DistnqsWarning, stacklevel=2)
    return recorded


class VMCJob:
    """Ground-state VMC (``distnqs run``) as a job of :func:`run_lifecycle`."""

    log_columns = LOG_COLUMNS

    def __init__(self, problem: Problem):
        self.problem, self.cfg = problem, problem.cfg
        self.n_steps = problem.cfg["n_steps"]
        self.n_samples_total = problem.step.n_samples_total
        self.reference = None
        self.guard = None
        self.outdir = None
        self.init_source = None  # {"path", "step"} of [run] init_from, when read at this start

    def init_state(self, fresh: bool = True):
        """Seeded initial state; at a fresh start with ``[run] init_from``, the parameters of that
        checkpoint (same lattice and shapes), with a new optimizer and sampler state."""
        source = self.cfg["run"].get("init_from")
        if not fresh or source is None:
            return self.problem.init_state()
        params, self.init_source = params_from_checkpoint(source, self.problem.init_params(), self.cfg, "[run] init_from", ("lattice",))
        _say(f"distnqs: parameters from {self.init_source['path']} (step {self.init_source['step']})")
        return self.problem.init_state(params)

    def step_fn(self):
        return self.problem.step.jit()

    @staticmethod
    def row(ctx) -> dict:
        return vmc_row(ctx)

    def before_loop(self, outdir, start, quiet):
        self.outdir = outdir
        if outdir is not None and self.cfg["run"].get("init_from") is not None:
            self.init_source = _init_source_record(outdir / INIT_SOURCE_FILE, self.init_source)
        self.reference = comm.on_root(_reference, self.problem, outdir)
        _say(f"distnqs: {self.problem.describe()}", quiet)
        if self.reference is not None:
            _say(f"distnqs: exact ground-state energy per site {self.reference['energy_per_site']:.8f}", quiet)

    def policies(self, checkpoints, start, quiet):
        run_cfg = self.cfg["run"]
        self.guard = DivergenceGuard(run_cfg["on_divergence"], run_cfg["max_rollbacks"], checkpoints, quiet)
        return [self.guard, ProgressLine(self.problem, self.reference, start, self.n_steps, run_cfg["print_every"], quiet)]

    def summary(self, final_step, state, metrics_host, outcome, status, t_begin, quiet) -> dict:
        problem, run_cfg = self.problem, self.cfg["run"]
        params, opt_state, sampler_state = state
        evaluated = None
        if status == "finished" and run_cfg["eval_steps"] > 0:  # metrics_host is None when no step ran here
            evaluated = _final_evaluation(problem, params, sampler_state, self.n_steps, run_cfg["eval_steps"], quiet)
            metrics_host = {**(metrics_host or {}), **evaluated}
        summary = _summary(problem, final_step, metrics_host, self.reference, status, time.perf_counter() - t_begin)
        summary["final_evaluation_steps"] = run_cfg["eval_steps"] if evaluated is not None else 0
        observables = problem.step.observables
        if evaluated is not None and observables is not None:
            extra = observables.summary(evaluated)
            summary["observables"].update(extra)
            if self.outdir is not None:
                from distnqs.io.observables import FILENAME, write_observables

                attrs = {"step": int(final_step), "eval_steps": int(run_cfg["eval_steps"]),
                         "n_samples_per_batch": int(problem.step.n_samples_total), "n_sites": int(problem.n_sites)}
                comm.on_root(write_observables, self.outdir / FILENAME, extra, attrs)
        guard_state = opt_state[1]
        summary["guard"] = {
            "rejected_steps": int(guard_state.n_rejected),
            "rescaled_steps": int(guard_state.n_rescaled),
            "rollbacks": int(guard_state.n_rollbacks),
            "learning_rate_scale": float(guard_state.lr_scale),
            "diag_shift_scale": float(guard_state.shift_scale),
            "rollback_events": self.guard.events,  # of this invocation (log.h5 keeps all, attribute "events")
        }
        summary["divergence"] = self.guard.diverged
        if self.init_source is not None:
            summary["init_from"] = self.init_source
        return summary

    def final_message(self, summary) -> None:
        if summary.get("energy_per_site") is None:
            return
        msg = f"distnqs: step {summary['step']}/{self.n_steps}  E/N = {summary['energy_per_site']:.8f} ± {summary['energy_per_site_error']:.8f}"
        if summary.get("reference"):
            ref = summary["reference"]
            statistical = summary["energy"]["error"] / abs(ref["energy"])
            msg += f"  exact {ref['energy_per_site']:.8f}  relative error {ref['relative_error']:.2e} (statistical {statistical:.1e})"
        _say(msg)
        r_hat = (summary.get("energy") or {}).get("R_hat")
        if comm.rank() == 0 and r_hat is not None and self.problem.sampler.n_samples_per_chain > 1 and not r_hat <= R_HAT_WARN:  # NaN too (frozen chains)
            warnings.warn(
                f"the Markov chains disagree in the final evaluation (R-hat {r_hat:.3g} > {R_HAT_WARN}; summary.json energy.R_hat): "
                "this energy and its error bar are not reliable (a state collapsed onto a few configurations, e.g. after too large "
                "first steps, or an ordered phase the moves cannot cross); see log.h5 for when R-hat rose",
                DistnqsWarning, stacklevel=2,
            )


def run(cfg: dict, outdir=None, *, quiet: bool = False, restart: bool = False, hamiltonian=None, model=None,
        stop_after: int | None = None, reschedule: bool = False) -> tuple[dict, int]:
    """Run (or resume) the optimization described by the resolved config ``cfg``.

    Returns ``(summary, exit_code)``. ``outdir=None`` runs in memory (no files).
    ``stop_after`` ends the run after that many steps of this invocation, as a
    signal would (used by tests and for wall-time budgets). ``reschedule``
    stretches the schedules over a changed ``n_steps`` on resume.
    """
    cfg = config_mod.resolve(cfg)  # idempotent: a config from the Python API is checked like a file's
    if "dynamics" in cfg:
        raise ConfigError("this config has a [dynamics] table: run it with distnqs evolve (distnqs run optimizes a ground state)")
    return run_lifecycle(
        cfg, outdir, lambda c: VMCJob(build_problem(c, hamiltonian=hamiltonian, model=model)),
        quiet=quiet, restart=restart, stop_after=stop_after, reschedule=reschedule,
    )
