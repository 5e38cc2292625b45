r"""Real- and imaginary-time t-VMC: ``distnqs evolve CONFIG --outdir D``.

One loop step advances the parameters by ``[dynamics] dt`` of simulated time
(one log row): ``euler`` / ``heun`` / ``rk4`` take one step of ``dt``,
``rk23`` as many adaptive substeps as its error control needs
(:mod:`distnqs.dynamics.integrators`), inside the same jitted function. Every
right-hand side is :math:`\dot\theta` of :mod:`distnqs.dynamics.tdvp` from
fresh samples: ``[sampler]``'s Metropolis chains (``n_samples`` per
evaluation over all ranks), or, with ``sampling = "full_enumeration"``, all
:math:`2^N` configurations weighted by :math:`|\psi|^2` (deterministic; tests and
small-system studies).

The run lifecycle is :func:`distnqs.driver.run_lifecycle`, the same as
``distnqs run``: run directory and lock, resume from the newest valid
checkpoint (parameters, the integrator state :class:`IntegratorState` with
time and adaptive substep, every rank's chains; keys are derived from (seed,
rank, step, evaluation)), ``log.h5`` rows (:data:`COLUMNS`), checkpoints
every ``[run] checkpoint_every`` steps, SIGTERM/SIGINT/SIGUSR1 then exit 75,
``summary.json``; a stopped and resumed evolution is bit-identical to an
uninterrupted one with the same number of ranks.

Initial state (``[dynamics] initial_state``):

- ``"plus_x"``: all spins along +x, i.e. :math:`\psi(s) = 2^{-N/2}` for every
  :math:`s`, prepared exactly in an RBM (``model = "rbm"``): visible and
  hidden biases 0, kernel :math:`W_{ij} = w\,\delta_{i,\,j \bmod N}` with
  :math:`w` = ``plus_x_weight``. Each hidden unit then sees one spin and
  :math:`\log\cosh(w s_i) = \log\cosh w` does not depend on :math:`s`: the
  state is exactly uniform, while
  :math:`O_{W_{kj}} = s_k\tanh(w s_{j \bmod N})` spans the two-spin
  directions :math:`s_k s_j` the quench needs first. (All-zero parameters
  are the uniform state too, but there every log-derivative is linear in
  :math:`s`, the TDVP force vanishes and the state never moves: a spurious
  fixed point.)
- ``"checkpoint"``: the parameters of a ``distnqs run`` checkpoint
  (``checkpoint`` = run directory, newest valid checkpoint, or a file), same
  lattice and ansatz.

Real time needs a complex :math:`\log\psi` (``param_dtype = "complex128"``):
see :mod:`distnqs.dynamics.tdvp`. The Hamiltonian after the quench is the
config's ``[hamiltonian]`` or, in Python, any NetKet operator
(``evolve(cfg, outdir, hamiltonian=op)``). With ``exact = true`` and
:math:`N \le 16` the exact evolution of the same initial state is stored in
``exact.json`` (and in ``summary.json`` at the final time).

Exit statuses as for ``distnqs run`` (0, 75, 65 for a non-finite estimate or
an ``rk23`` step that needed more than ``max_substeps`` substeps, 70, 74, 2).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from distnqs import comm
from distnqs import config as config_mod
from distnqs.dynamics.exact import MAX_EXACT_DYNAMICS_SITES, exact_evolution, state_vector
from distnqs.dynamics.integrators import TABLEAUS, axpy_tree, rk_stages
from distnqs.dynamics.observables import sx_local, szsz_local
from distnqs.dynamics.tdvp import TDVP
from distnqs.errors import ConfigError
from distnqs.estimators.qgt import qgt_matvec
from distnqs.estimators.stats import Stats, statistics
from distnqs.io.files import atomic_write_json
from distnqs.operators import local_energy
from distnqs.optim.cg import vdot_real_tree

COLUMNS = (
    "step", "t", "dt", "n_substeps", "n_rejected",
    "energy_mean", "energy_mean_imag", "energy_error", "energy_variance", "R_hat", "tau_corr",
    "sx", "sx_error", "szsz", "szsz_error",
    "tdvp_residual", "cg_iterations", "acceptance", "seconds_per_step", "samples_per_second",
)
MAX_ENUMERATION_SITES = 20


class IntegratorState(NamedTuple):
    """The integrator's part of a checkpoint (the ``opt_state`` slot of the run lifecycle)."""

    t: jax.Array  # simulated time reached, float64
    h: jax.Array  # next rk23 substep to try (dt for the fixed-step integrators)
    n_substeps: jax.Array  # accepted substeps so far, int32
    n_rejected: jax.Array  # rejected rk23 substeps so far, int32


def _enumeration_stats(x, weights) -> Stats:
    """Exact averages over all configurations: no statistical error."""
    mean = comm.sum(jnp.sum(weights * x))
    variance = comm.sum(jnp.sum(weights * jnp.abs(x - mean) ** 2))
    zero = jnp.zeros((), jnp.float64)
    return Stats(mean, zero, variance, zero, jnp.full((), jnp.nan))


@dataclass(frozen=True, eq=False)
class EvolveStep:
    """One loop step of t-VMC: ``(params, IntegratorState, sampler_state, step) -> (..., metrics)``."""

    ansatz: Any
    hamiltonian: Any
    sampler: Any
    tdvp: TDVP
    integrator: str
    dt: float
    seed: int
    pairs: tuple
    chunk_size: int | None = None
    fast_update: Any = None
    rk23_tol: float = 1e-3
    max_substeps: int = 64
    enumeration: Any = None  # this rank's configurations (full enumeration) or None (Monte Carlo)
    enumeration_valid: Any = None  # 1 for real configurations, 0 for padding

    @property
    def n_samples_local(self) -> int:
        if self.enumeration is not None:
            return int(self.enumeration.shape[0])
        return self.sampler.n_chains * self.sampler.n_samples_per_chain

    @property
    def n_samples_total(self) -> int:
        return self.n_samples_local * comm.size()

    def draw(self, params, sampler_state, key):
        """``(samples (n, N), log psi, weights, sampler_state, shape)`` for one evaluation."""
        log_psi = self.ansatz.log_psi
        if self.enumeration is not None:
            flat = self.enumeration
            lp = log_psi(params, flat)
            logw = 2.0 * jnp.real(lp)
            logw = jnp.where(self.enumeration_valid > 0, logw, -jnp.inf)
            top = comm.max(jnp.max(logw))
            w = jnp.exp(logw - top)
            return flat, lp, w / comm.sum(jnp.sum(w)), sampler_state, None
        samples, sampler_state = self.sampler.sample(log_psi, params, sampler_state, key)
        nc, ns, n = samples.shape
        flat = samples.reshape(nc * ns, n)
        weights = jnp.full((nc * ns,), 1.0 / self.n_samples_total)
        return flat, log_psi(params, flat), weights, sampler_state, (nc, ns)

    def _stats(self, x, weights, shape):
        return _enumeration_stats(x, weights) if shape is None else statistics(x.reshape(shape))

    def rhs(self, params, sampler_state, key, measure: bool = False):
        r"""``(theta_dot, sampler_state, info, batch, metrics)``: :math:`\dot\theta` from fresh samples."""
        log_psi = self.ansatz.log_psi
        flat, lp, weights, sampler_state, shape = self.draw(params, sampler_state, key)
        e_loc = local_energy(log_psi, params, self.hamiltonian, flat, lp, self.chunk_size, self.fast_update)
        n_mc = jnp.inf if shape is None else float(self.n_samples_total)
        theta_dot, info = self.tdvp.velocity(log_psi, params, flat, weights, e_loc, n_mc)
        metrics = {}
        if measure:
            metrics = self._observables(params, flat, lp, weights, e_loc, shape)
        return theta_dot, sampler_state, info, (flat, weights), metrics

    def _observables(self, params, flat, lp, weights, e_loc, shape):
        sx = sx_local(self.ansatz.log_psi, params, flat, lp, self.chunk_size)
        return {
            "energy": self._stats(e_loc, weights, shape),
            "sx": self._stats(jnp.real(sx), weights, shape),
            "szsz": self._stats(szsz_local(flat, self.pairs), weights, shape),
        }

    def __call__(self, params, istate: IntegratorState, sampler_state, step):
        key = comm.step_key(self.seed, step)
        tab = TABLEAUS[self.integrator]

        def f(y, carry, i):
            ss, counter, _ = carry
            k, ss, _, batch, _ = self.rhs(y, ss, jax.random.fold_in(key, counter))
            return k, (ss, counter + 1, batch)

        k0, sampler_state, info0, batch0, metrics = self.rhs(params, sampler_state, jax.random.fold_in(key, 0), measure=True)
        acc = comm.sum(jnp.stack([sampler_state.n_accepted, sampler_state.n_proposed]).astype(jnp.float64))
        dt = jnp.asarray(self.dt, jnp.float64)
        if tab.b_low is None:
            ks, (sampler_state, _, _) = rk_stages(f, params, dt, (sampler_state, jnp.asarray(1, jnp.int32), batch0), tab, k0=k0)
            params = axpy_tree(params, dt, tab.b, ks)
            istate = IntegratorState(
                (step + 1) * dt, dt, istate.n_substeps + 1, istate.n_rejected
            )
            n_sub, n_rej, complete = 1, 0, jnp.asarray(True)
        else:
            params, sampler_state, istate, n_sub, n_rej, complete = self._adaptive(
                f, tab, params, sampler_state, istate, k0, batch0, step
            )
        metrics["tdvp_residual"] = info0["residual"]
        metrics["cg_iterations"] = info0["iterations"]
        metrics["acceptance"] = acc[0] / jnp.maximum(acc[1], 1.0)
        metrics["n_substeps"] = n_sub
        metrics["n_rejected"] = n_rej
        metrics["complete"] = complete
        return params, istate, sampler_state, metrics

    def _adaptive(self, f, tab, params, sampler_state, istate, k0, batch0, step):
        r"""rk23 substeps covering ``dt``; error :math:`\sqrt{\delta^T S\delta}` with S from the first stage's samples."""
        dt = jnp.asarray(self.dt, jnp.float64)
        tol = self.rk23_tol
        diff = tuple(b - bl for b, bl in zip(tab.b, tab.b_low))

        def cond(c):
            y, ss, k1, batch, s, h, counter, n_acc, n_rej = c
            return (s < dt * (1.0 - 1e-12)) & (n_acc + n_rej < self.max_substeps)

        def body(c):
            y, ss, k1, batch, s, h, counter, n_acc, n_rej = c
            h_use = jnp.minimum(h, dt - s)
            ks, (ss, counter, last_batch) = rk_stages(f, y, h_use, (ss, counter, batch), tab, k0=k1)
            y_new = axpy_tree(y, h_use, tab.b, ks)
            zero = jax.tree_util.tree_map(jnp.zeros_like, y)
            delta = axpy_tree(zero, h_use, diff, ks)
            flat, weights = batch
            s_delta = qgt_matvec(self.ansatz.log_psi, y, flat, delta, self.n_samples_total, self.tdvp.chunk_size, None, weights)
            err = jnp.sqrt(jnp.maximum(vdot_real_tree(delta, s_delta), 0.0))
            accept = err <= tol
            factor = jnp.clip(0.9 * (tol / jnp.maximum(err, 1e-300)) ** (1.0 / 3.0), 0.2, 5.0)
            factor = jnp.where(jnp.isfinite(err), factor, 0.2)
            h_next = jnp.where(accept & (h_use < h), jnp.maximum(h, h_use * factor), h_use * factor)
            h_next = jnp.minimum(h_next, dt)
            pick = lambda a, b: jax.tree_util.tree_map(lambda x, z: jnp.where(accept, x, z), a, b)  # noqa: E731
            return (
                pick(y_new, y), ss, pick(ks[-1], k1), pick(last_batch, batch),
                jnp.where(accept, s + h_use, s), h_next, counter,
                n_acc + accept.astype(jnp.int32), n_rej + (~accept).astype(jnp.int32),
            )

        zero_i = jnp.zeros((), jnp.int32)
        init = (params, sampler_state, k0, batch0, jnp.zeros((), jnp.float64), istate.h, jnp.asarray(1, jnp.int32), zero_i, zero_i)
        y, ss, _, _, s, h, _, n_acc, n_rej = jax.lax.while_loop(cond, body, init)
        complete = s >= dt * (1.0 - 1e-12)
        istate = IntegratorState((step + 1) * dt, h, istate.n_substeps + n_acc, istate.n_rejected + n_rej)
        return y, ss, istate, n_acc, n_rej, complete

    def evaluate(self, params, sampler_state, index):
        """Observables of fixed ``params`` (no update); keys disjoint from the steps' evaluations."""
        key = jax.random.fold_in(comm.step_key(self.seed, index), 2**30)
        flat, lp, weights, sampler_state, shape = self.draw(params, sampler_state, key)
        e_loc = local_energy(self.ansatz.log_psi, params, self.hamiltonian, flat, lp, self.chunk_size, self.fast_update)
        return sampler_state, self._observables(params, flat, lp, weights, e_loc, shape)

    def jit(self):
        return jax.jit(self.__call__)


# ---------------------------------------------------------------------------
# Initial states
# ---------------------------------------------------------------------------

def plus_x_params(ansatz, template, weight: float):
    """RBM parameters of the exact all-+x state (see the module docstring)."""
    from distnqs.models.base import from_real, to_real
    from distnqs.models.rbm import RBM

    if not isinstance(ansatz.module, RBM):
        raise ConfigError('[dynamics] initial_state = "plus_x" is prepared exactly for model = "rbm" only; '
                          'use initial_state = "checkpoint" for other ansatzes')
    params = jax.tree_util.tree_map(jnp.zeros_like, from_real(template))
    n, m = params["kernel"].shape
    kernel = np.zeros((n, m))
    kernel[np.arange(m) % n, np.arange(m)] = weight
    params = {**params, "kernel": jnp.asarray(kernel, params["kernel"].dtype)}
    return to_real(params)


# ---------------------------------------------------------------------------
# The job of the run lifecycle
# ---------------------------------------------------------------------------

def _say(msg: str, quiet: bool = False) -> None:
    if comm.rank() == 0 and not quiet:
        print(msg, flush=True)


def evolve_row(ctx, dt: float) -> dict:
    """The ``log.h5`` row of one step (:data:`COLUMNS`); ``t`` is the time of the measured state (step start)."""
    from distnqs.driver import energy_columns

    m = ctx.metrics
    istate = ctx.state[1]
    return {
        "step": ctx.step,
        "t": ctx.step * dt,
        "dt": float(istate.h),
        "n_substeps": float(m["n_substeps"]),
        "n_rejected": float(m["n_rejected"]),
        **energy_columns(m["energy"]),
        "sx": float(np.real(m["sx"].mean)),
        "sx_error": float(m["sx"].error_of_mean),
        "szsz": float(np.real(m["szsz"].mean)),
        "szsz_error": float(m["szsz"].error_of_mean),
        "tdvp_residual": float(m["tdvp_residual"]),
        "cg_iterations": float(m["cg_iterations"]),
        "acceptance": float(m["acceptance"]),
        "seconds_per_step": ctx.seconds,
        "samples_per_second": m.get("n_samples_total", np.nan) / ctx.seconds,
    }


class DynamicsGuard:
    """Stops the evolution (exit 65, nothing of the step saved) on a non-finite estimate or parameter,
    or an rk23 step that did not reach ``dt`` within ``max_substeps`` substeps."""

    def __init__(self, max_substeps: int):
        self.max_substeps = max_substeps
        self.diverged = None

    def after_step(self, ctx):
        from distnqs.driver import EXIT_DIVERGED, Outcome, _all_finite_leaves

        row = ctx.row
        problem = None
        for name in ("energy_mean", "energy_variance", "sx", "tdvp_residual"):
            if not np.isfinite(row[name]):
                problem = (name, row[name])
                break
        if problem is None and not _all_finite_leaves(ctx.state[0]):
            problem = ("parameters", float("nan"))
        if problem is None and not bool(ctx.metrics["complete"]):
            problem = ("rk23 substeps", float(self.max_substeps))
        if problem is None:
            return
        self.diverged = {"step": ctx.done, "quantity": problem[0], "value": problem[1]}
        if comm.rank() == 0:
            print(
                f"distnqs: diverged at step {ctx.done} (t = {row['t']:.6g}): {problem[0]} = {problem[1]:.6g}; nothing of "
                f"this step was saved (exit {EXIT_DIVERGED}: lower dt, raise diag_shift or the number of samples)",
                file=sys.stderr, flush=True,
            )
        ctx.outcome = Outcome("diverged", EXIT_DIVERGED, ctx.step)


class EvolveProgress:
    """``[k/n] t = ... E = ... <sx> = ... r2 = ...`` every ``print_every`` steps (rank 0)."""

    def __init__(self, n_steps: int, start: int, print_every: int, quiet: bool):
        self.n_steps, self.start, self.print_every, self.quiet = n_steps, start, max(1, print_every), quiet

    def after_step(self, ctx):
        done = ctx.done
        if comm.rank() != 0 or self.quiet or not (done % self.print_every == 0 or done == self.n_steps or done == self.start + 1):
            return
        r = ctx.row
        print(
            f"[{done:>{len(str(self.n_steps))}}/{self.n_steps}] t = {r['t']:.4f}  E = {r['energy_mean']:.6f} ± {r['energy_error']:.6f}"
            f"  <sx> = {r['sx']:.5f} ± {r['sx_error']:.5f}  <szsz> = {r['szsz']:.5f}  r² = {r['tdvp_residual']:.2e}"
            f"  substeps {int(r['n_substeps'])}  {ctx.seconds:.2f} s/step",
            flush=True,
        )


class EvolveJob:
    """t-VMC as a job of :func:`distnqs.driver.run_lifecycle`."""

    log_columns = COLUMNS

    def __init__(self, cfg: dict, hamiltonian=None, model=None):
        from distnqs.problem import build_problem

        self.cfg = cfg
        dyn = cfg["dynamics"]
        self.dyn = dyn
        self.problem = problem = build_problem(cfg, hamiltonian=hamiltonian, model=model)
        self.n_steps = cfg["n_steps"]
        n = problem.n_sites
        lp_type = jax.eval_shape(problem.ansatz.log_psi, problem.ansatz.shapes(), jnp.ones((1, n)))
        if not dyn["imaginary"] and not jnp.iscomplexobj(lp_type):
            raise ConfigError('real-time evolution needs a complex log psi: set [ansatz] param_dtype = "complex128" '
                              "(or [dynamics] imaginary = true)")
        enumeration = valid = None
        if dyn["sampling"] == "full_enumeration":
            if n > MAX_ENUMERATION_SITES:
                raise ConfigError(f'[dynamics] sampling = "full_enumeration" needs N <= {MAX_ENUMERATION_SITES} sites, got {n}')
            states = np.asarray(problem.hamiltonian.hilbert.all_states(), dtype=np.float64)
            per_rank = -(-states.shape[0] // comm.size())
            pad = per_rank * comm.size() - states.shape[0]
            valid = np.concatenate([np.ones(states.shape[0]), np.zeros(pad)])
            states = np.concatenate([states, np.repeat(states[-1:], pad, axis=0)])
            r = comm.rank()
            enumeration = jnp.asarray(states[r * per_rank:(r + 1) * per_rank])
            valid = jnp.asarray(valid[r * per_rank:(r + 1) * per_rank])
        chunk = cfg["run"].get("chunk_size") or None
        fast = problem.ansatz.fast_update if cfg["run"].get("fast_update", True) else None
        self.tdvp = TDVP(
            imaginary=dyn["imaginary"], regularization=dyn["regularization"], diag_shift=float(dyn["diag_shift"]),
            solver=dyn["solver"], cg_maxiter=dyn["cg_maxiter"], cg_tol=float(dyn["cg_tol"]), rcond=float(dyn["rcond"]),
            rcond_smooth=float(dyn["rcond_smooth"]), snr_cutoff=float(dyn["snr_cutoff"]), chunk_size=chunk,
        )
        self.step = EvolveStep(
            ansatz=problem.ansatz, hamiltonian=problem.hamiltonian, sampler=problem.sampler, tdvp=self.tdvp,
            integrator=dyn["integrator"], dt=float(dyn["dt"]), seed=cfg["seed"],
            pairs=tuple(problem.lattice.nearest_neighbour_pairs()), chunk_size=chunk, fast_update=fast,
            rk23_tol=float(dyn["rk23_tol"]), max_substeps=dyn["max_substeps"],
            enumeration=enumeration, enumeration_valid=valid,
        )
        self.n_samples_total = self.step.n_samples_total if enumeration is None else int(2**n)
        self.exact = None
        self.guard = DynamicsGuard(dyn["max_substeps"])

    def initial_params(self):
        template = self.problem.init_params()
        if self.dyn["initial_state"] == "plus_x":
            return plus_x_params(self.problem.ansatz, template, float(self.dyn["plus_x_weight"]))
        from distnqs.driver import params_from_checkpoint

        return params_from_checkpoint(self.dyn["checkpoint"], template, self.cfg, "[dynamics] checkpoint", ("lattice", "ansatz"))[0]

    def init_state(self, fresh: bool = True):  # a resume replaces these values with its checkpoint's
        params = self.initial_params()
        dt = jnp.asarray(float(self.dyn["dt"]), jnp.float64)
        zero = jnp.zeros((), jnp.int32)
        istate = IntegratorState(jnp.zeros((), jnp.float64), dt, zero, zero)
        sampler_state = self.problem.sampler.init_state(self.problem.ansatz.log_psi, params, comm.rank_key(self.cfg["seed"] + 1))
        return params, istate, sampler_state

    def step_fn(self):
        return self.step.jit()

    def row(self, ctx) -> dict:
        return evolve_row(ctx, float(self.dyn["dt"]))

    def describe(self) -> str:
        d = self.dyn
        kind = "imaginary-time" if d["imaginary"] else "real-time"
        sampling = "full enumeration" if d["sampling"] == "full_enumeration" else f"{self.step.n_samples_total} samples per evaluation"
        reg = f"diag_shift {d['diag_shift']} ({d['solver']})" if d["regularization"] == "diag_shift" else f"SNR cutoff {d['snr_cutoff']}"
        return (f"{kind} t-VMC from {d['initial_state']} to t = {d['t_final']} in {self.n_steps} steps of {d['dt']} "
                f"({d['integrator']}, {reg}, {sampling}) on {comm.size()} rank(s)")

    def before_loop(self, outdir, start, quiet):
        _say(f"distnqs: {self.problem.describe()}", quiet)
        _say(f"distnqs: {self.describe()}", quiet)
        if self.dyn["exact"] and self.problem.n_sites <= MAX_EXACT_DYNAMICS_SITES:
            self.exact = comm.on_root(self._exact, outdir)

    def _exact(self, outdir):
        key = {"physics_hash": config_mod.physics_hash(self.cfg), "n_steps": self.n_steps,
               "hamiltonian": str(self.cfg["hamiltonian"])}
        cache = outdir / "exact.json" if outdir is not None else None
        if cache is not None and cache.exists():
            try:
                data = json.loads(cache.read_text())
                if all(data.get(k) == v for k, v in key.items()):
                    return data
            except (OSError, ValueError):
                pass
        hamiltonian = self.problem.hamiltonian
        psi0 = state_vector(self.problem.ansatz.log_psi, self.initial_params(), hamiltonian.hilbert)
        times = np.arange(self.n_steps + 1) * float(self.dyn["dt"])
        data = {**key, "source": "scipy.sparse.linalg.expm_multiply on NetKet's sparse Hamiltonian",
                **exact_evolution(hamiltonian, psi0, self.step.pairs, times, self.dyn["imaginary"])}
        if cache is not None:
            atomic_write_json(cache, data)
        return data

    def policies(self, checkpoints, start, quiet):
        return [self.guard, EvolveProgress(self.n_steps, start, self.cfg["run"]["print_every"], quiet)]

    def final_observables(self, params, sampler_state) -> dict:
        """Observables at the final time over ``[run] eval_steps`` batches (one for full enumeration)."""
        evaluate = jax.jit(self.step.evaluate)
        k_max = 1 if self.step.enumeration is not None else max(1, self.cfg["run"]["eval_steps"])
        batches = []
        for k in range(k_max):
            sampler_state, metrics = evaluate(params, sampler_state, jnp.asarray(self.n_steps + k, jnp.int32))
            batches.append(jax.device_get(metrics))
        out = {}
        for name in batches[0]:
            st = [b[name] for b in batches]
            out[name] = {
                "mean": float(np.mean([np.real(x.mean) for x in st])),
                "error": float(np.sqrt(np.sum([x.error_of_mean**2 for x in st])) / len(st)),
                "variance": float(np.mean([x.variance for x in st])),
            }
        return out

    def summary(self, final_step, state, metrics_host, outcome, status, t_begin, quiet) -> dict:
        params, istate, sampler_state = state
        summary = {
            "kind": "evolve",
            "status": status,
            "step": final_step,
            "n_steps": self.n_steps,
            "t": float(istate.t),
            "t_final": float(self.dyn["t_final"]),
            "imaginary": bool(self.dyn["imaginary"]),
            "integrator": self.dyn["integrator"],
            "n_sites": self.problem.n_sites,
            "n_ranks": comm.size(),
            "n_samples_per_evaluation": self.n_samples_total,
            "accepted_substeps": int(istate.n_substeps),
            "rejected_substeps": int(istate.n_rejected),
            "observables": None,
            "exact": None,
            "physics_hash": config_mod.physics_hash(self.cfg),
            "divergence": self.guard.diverged,
        }
        if status == "finished":  # also when no step ran here (resumed at the last step)
            obs = self.final_observables(params, sampler_state)
            summary["observables"] = obs
            summary["energy"] = obs["energy"]
            if self.exact is not None:
                summary["exact"] = {name: self.exact[name][-1] for name in ("sx", "szsz", "energy", "energy_variance")}
                summary["exact"]["source"] = self.exact["source"]
        summary["wall_time_s"] = time.perf_counter() - t_begin
        return summary

    def final_message(self, summary) -> None:
        obs = summary.get("observables")
        if not obs:
            return
        msg = (f"distnqs: t = {summary['t']:.6g}  <sx> = {obs['sx']['mean']:.6f} ± {obs['sx']['error']:.6f}  "
               f"<szsz> = {obs['szsz']['mean']:.6f} ± {obs['szsz']['error']:.6f}  E = {obs['energy']['mean']:.6f} ± {obs['energy']['error']:.6f}")
        if summary.get("exact"):
            ex = summary["exact"]
            msg += f"  (exact <sx> = {ex['sx']:.6f}, <szsz> = {ex['szsz']:.6f}, E = {ex['energy']:.6f})"
        _say(msg)


def evolve(cfg: dict, outdir=None, *, quiet: bool = False, restart: bool = False, hamiltonian=None, model=None,
           stop_after: int | None = None) -> tuple[dict, int]:
    """Run (or resume) the evolution described by ``cfg`` (with a ``[dynamics]`` table); ``(summary, exit_code)``.

    ``hamiltonian``: a NetKet operator for the dynamics instead of ``[hamiltonian]``; ``model``: a flax module.
    """
    from distnqs.driver import run_lifecycle

    cfg = config_mod.resolve(cfg)
    if "dynamics" not in cfg:
        raise ConfigError("distnqs evolve needs a [dynamics] table (t_final, dt, ...)")
    return run_lifecycle(cfg, outdir, lambda c: EvolveJob(c, hamiltonian=hamiltonian, model=model),
                         quiet=quiet, restart=restart, stop_after=stop_after)
