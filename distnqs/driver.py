"""The optimization loop: resume, step, log, checkpoint, summary.

``run(cfg, outdir)`` is what ``distnqs run CONFIG --outdir D`` calls on every
rank. It

1. builds the problem (:mod:`distnqs.problem`),
2. prepares ``D`` on rank 0 (``--restart`` moves an old run aside, never
   deletes it) and refuses a changed physics config,
3. resumes from the newest valid checkpoint (falling back past damaged ones),
4. runs the jitted step, writing one ``log.h5`` row per step and a progress
   line on rank 0,
5. checkpoints every ``checkpoint_every`` steps, at the end, and after a
   SIGTERM / SIGINT / SIGUSR1 (at the end of the current step; the job then
   exits with :data:`EXIT_SIGNALLED`),
6. writes ``summary.json`` (energy, per site, reference from exact
   diagonalization when N <= 20).

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

import jax
import jax.numpy as jnp
import numpy as np

from distnqs import comm
from distnqs import config as config_mod
from distnqs import devices
from distnqs.errors import CheckpointError, ConfigError
from distnqs.io import checkpoint
from distnqs.io import lock as run_lock
from distnqs.io.files import atomic_write_json, atomic_write_text
from distnqs.io.log import StepLog
from distnqs.models import n_parameters
from distnqs.operators.exact import MAX_EXACT_SITES, ground_state_energy
from distnqs.problem import Problem, build_problem

EXIT_OK = 0
EXIT_SIGNALLED = 75  # EX_TEMPFAIL: stopped by a signal after writing a checkpoint; rerun to resume
STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR1")
RUN_FILES = ("config.toml", "log.h5", "summary.json", "reference.json")


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
    outdir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(outdir / "config.toml", config_mod.dumps_toml(cfg))
    return moved


def _check_same_physics(previous: dict, cfg: dict, outdir: Path) -> None:
    for key in config_mod.PHYSICS_KEYS:
        if previous.get(key) != cfg.get(key):
            raise ConfigError(
                f"{outdir} holds a run with a different [{key}] ({previous.get(key)} != {cfg.get(key)}); "
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
    ``DISTNQS_FAULT_RANK`` picks the rank (default 0). Used by the resume and
    abort tests; never set in production.
    """
    import os

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
        "n_parameters": n_parameters(problem.init_params()),
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
    from distnqs.estimators.stats import Stats

    evaluate = jax.jit(problem.step.evaluate)
    batches = []
    for k in range(eval_steps):
        sampler_state, metrics = evaluate(params, sampler_state, jnp.asarray(n_steps + k, jnp.int32))
        batches.append(jax.device_get(metrics))
    out = {}
    for key in batches[0]:
        st = [b[key] for b in batches]
        out[key] = Stats(
            mean=np.mean([x.mean for x in st]),
            error_of_mean=np.sqrt(np.sum([x.error_of_mean**2 for x in st])) / len(st),
            variance=np.mean([x.variance for x in st]),
            tau_corr=np.mean([x.tau_corr for x in st]),
            R_hat=np.max([x.R_hat for x in st]),
        )
    _say(f"distnqs: final evaluation over {eval_steps} x {problem.step.n_samples_total} samples", quiet)
    return out


# ---------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------

def run(cfg: dict, outdir=None, *, quiet: bool = False, restart: bool = False, hamiltonian=None, model=None,
        stop_after: int | None = None) -> tuple[dict, int]:
    """Run (or resume) the optimization described by the resolved config ``cfg``.

    Returns ``(summary, exit_code)``. ``outdir=None`` runs in memory (no files).
    ``stop_after`` ends the run after that many steps of this invocation, as a
    signal would (used by tests and for wall-time budgets).
    """
    cfg = config_mod.resolve(cfg) if "run" not in cfg else cfg
    devices.select(cfg["run"].get("device", "auto"))
    problem = build_problem(cfg, hamiltonian=hamiltonian, model=model)
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

    params, opt_state, sampler_state = problem.init_state()
    start = 0
    if saved is not None:
        if saved["attrs"].get("physics_hash") != config_mod.physics_hash(cfg):
            raise ConfigError(f"checkpoint {saved['path']} belongs to a different problem; use --restart or another --outdir")
        params = _unflatten_like(params, saved["params"], "parameters")
        opt_state = _unflatten_like(opt_state, saved["opt_state"], "optimizer state")
        sampler_state, note = _restore_sampler(sampler_state, saved["sampler"])
        if note and comm.rank() == 0:
            warnings.warn(note, stacklevel=2)
        start = saved["step"]
        _say(f"distnqs: resuming from {saved['path'].name} (step {start})", quiet)

    reference = comm.on_root(_reference, problem, outdir)
    n_steps = cfg["n_steps"]
    _say(f"distnqs: {problem.describe()}", quiet)
    if reference is not None:
        _say(f"distnqs: exact ground-state energy per site {reference['energy_per_site']:.8f}", quiet)

    holder = {}  # the log object lives on rank 0; only its success is broadcast

    def open_log():
        holder["log"] = StepLog(outdir / "log.h5", resume_step=start)

    if outdir is not None:
        comm.on_root(open_log)
    log = holder.get("log")
    step_fn = problem.step.jit()
    run_cfg = cfg["run"]
    every = run_cfg["checkpoint_every"]
    print_every = max(1, run_cfg["print_every"])
    metrics_host = None
    status, code = "finished", EXIT_OK
    t_begin = time.perf_counter()
    ema = None
    step = start
    try:
        with _StopFlag() as flag:
            for step in range(start, n_steps):
                t0 = time.perf_counter()
                params, opt_state, sampler_state, metrics = step_fn(params, opt_state, sampler_state, jnp.asarray(step, jnp.int32))
                metrics_host = jax.device_get(metrics)
                dt = time.perf_counter() - t0
                if step > start:  # the first step of a process includes compilation
                    ema = dt if ema is None else 0.9 * ema + 0.1 * dt
                done = step + 1
                if comm.rank() == 0:
                    e = metrics_host["energy"]
                    row = {
                        "step": step,
                        "energy_mean": float(np.real(e.mean)),
                        "energy_mean_imag": float(np.imag(e.mean)),
                        "energy_error": float(e.error_of_mean),
                        "energy_variance": float(e.variance),
                        "tau_corr": float(e.tau_corr),
                        "R_hat": float(e.R_hat),
                        "acceptance": float(metrics_host["acceptance"]),
                        "learning_rate": float(metrics_host["learning_rate"]),
                        "seconds_per_step": dt,
                        "samples_per_second": problem.step.n_samples_total / dt,
                    }
                    for key in ("m", "abs_m", "m2"):
                        if key in metrics_host:
                            row[key] = float(np.real(metrics_host[key].mean))
                    if log is not None:
                        log.append(row)
                    if not quiet and (done % print_every == 0 or done == n_steps or done == start + 1):
                        speed = f"{1.0 / ema:.1f} steps/s  ETA {_fmt_seconds((n_steps - done) * ema)}" if ema else "first step"
                        # R-hat compares Markov chains; i.i.d. direct samples have none (one sample per "chain")
                        rhat = f"  R̂ {row['R_hat']:.3f}" if problem.sampler.n_samples_per_chain > 1 else ""
                        rel = ""
                        if reference is not None:
                            rel = f"  rel.err {abs((row['energy_mean'] - reference['energy']) / reference['energy']):.2e}"
                        print(
                            f"[{done:>{len(str(n_steps))}}/{n_steps}] E = {row['energy_mean']:.6f} ± {row['energy_error']:.6f}"
                            f"  σ² = {row['energy_variance']:.4f}  acc {row['acceptance']:.2f}"
                            f"{rhat}{rel}  {speed}",
                            flush=True,
                        )
                stop = comm.any_true(flag.signal is not None or (stop_after is not None and done - start >= stop_after))
                if outdir is not None and (stop or done == n_steps or (every and done % every == 0)):
                    _save(outdir, done, params, opt_state, sampler_state, cfg, run_cfg["keep_checkpoints"])
                _inject_fault(done)
                if stop and done < n_steps:
                    status, code = "stopped", EXIT_SIGNALLED
                    _say(f"distnqs: stopped after step {done} ({flag.signal or 'stop_after'}); checkpoint written, rerun the same command to resume")
                    break
    finally:
        if log is not None:
            log.close()

    final_step = start if metrics_host is None else step + 1
    status = "finished" if final_step >= n_steps else "stopped"
    evaluated = None
    if status == "finished" and metrics_host is not None and run_cfg["eval_steps"] > 0:
        evaluated = _final_evaluation(problem, params, sampler_state, n_steps, run_cfg["eval_steps"], quiet)
        metrics_host = {**metrics_host, **evaluated}
    summary = _summary(problem, final_step, metrics_host, reference, status, time.perf_counter() - t_begin)
    summary["final_evaluation_steps"] = run_cfg["eval_steps"] if evaluated is not None else 0
    if metrics_host is None and outdir is not None:
        previous = comm.on_root(lambda: json.loads((outdir / "summary.json").read_text()) if (outdir / "summary.json").exists() else None)
        if previous is not None and previous.get("step") == final_step:
            summary = previous  # nothing left to do: report the finished run
    if outdir is not None:
        comm.on_root(atomic_write_json, outdir / "summary.json", summary)
        comm.on_root(run_lock.release, outdir)
    if summary.get("energy_per_site") is not None:
        msg = f"distnqs: step {summary['step']}/{n_steps}  E/N = {summary['energy_per_site']:.8f} ± {summary['energy_per_site_error']:.8f}"
        if summary.get("reference"):
            msg += f"  exact {summary['reference']['energy_per_site']:.8f}  relative error {summary['reference']['relative_error']:.2e}"
        _say(msg)
    return summary, code
