"""Optimizers: optax SGD/Adam with a learning-rate schedule, optionally
preconditioned by stochastic reconfiguration (:class:`distnqs.optim.sr.SR`).

``[optimizer]`` table: ``kind`` (sgd | adam), ``learning_rate``,
``schedule`` (constant | linear | cosine) with ``learning_rate_final`` reached at
step ``schedule_steps`` (default n_steps at the first start; the final value holds after it),
``sr`` (true/false), ``diag_shift`` (with optional geometric decay to
``diag_shift_final`` over ``diag_shift_steps``, default n_steps), ``solver`` (cg | dense | minsr), ``cg_maxiter``, ``cg_tol``,
``minsr_rcond`` (minsr: relative eigenvalue cut of the sample-space matrix; 0: Cholesky),
``minsr_holomorphic`` (minsr: the complex form, for a holomorphic network with complex parameters).
"""

from __future__ import annotations

from dataclasses import dataclass

import optax

from distnqs.errors import ConfigError
from distnqs.optim.guard import GuardState, StepGuard, build_guard
from distnqs.optim.sr import SR

KINDS = ("sgd", "adam")
SCHEDULES = ("constant", "linear", "cosine")
_OPTIONS = {"kind", "learning_rate", "schedule", "learning_rate_final", "sr", "diag_shift", "diag_shift_final", "diag_shift_steps", "solver", "cg_maxiter", "cg_tol", "minsr_rcond", "minsr_holomorphic", "b1", "b2", "schedule_steps"}


@dataclass(frozen=True)
class Optimizer:
    """An optax transformation, its schedule (for logging), an optional SR preconditioner
    and the step guard (:mod:`distnqs.optim.guard`).

    The optimizer state is the pair ``(optax state, GuardState)``.
    """

    tx: optax.GradientTransformation
    schedule: optax.Schedule
    sr: SR | None
    guard: StepGuard = StepGuard()

    def init(self, params):
        return (self.tx.init(params), self.guard.init())


def build_schedule(cfg: dict, n_steps: int) -> optax.Schedule:
    lr = cfg.get("learning_rate", 0.01)
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or lr <= 0:
        raise ConfigError(f"[optimizer] learning_rate must be a positive number, got {lr!r}")
    kind = cfg.get("schedule", "constant")
    if kind not in SCHEDULES:
        raise ConfigError(f"unknown learning-rate schedule {kind!r}; choose one of: {', '.join(SCHEDULES)}")
    final = float(cfg.get("learning_rate_final", lr))
    horizon = max(1, int(cfg.get("schedule_steps", n_steps)))  # absolute steps; the final value holds after it
    if kind == "constant":
        return optax.constant_schedule(float(lr))
    if kind == "linear":
        return optax.linear_schedule(float(lr), final, horizon)
    return optax.cosine_decay_schedule(float(lr), horizon, alpha=final / float(lr))


def build_optimizer(cfg: dict, n_steps: int, chunk_size=None, guard: StepGuard | None = None) -> Optimizer:
    kind = cfg.get("kind", "sgd")
    if kind not in KINDS:
        raise ConfigError(f"unknown optimizer kind {kind!r}; choose one of: {', '.join(KINDS)}")
    unknown = set(cfg) - _OPTIONS
    if unknown:
        raise ConfigError(f"[optimizer] has no option {sorted(unknown)[0]!r} (options: {', '.join(sorted(_OPTIONS))})")
    schedule = build_schedule(cfg, n_steps)
    if kind == "sgd":
        tx = optax.sgd(schedule)
    else:
        tx = optax.adam(schedule, b1=cfg.get("b1", 0.9), b2=cfg.get("b2", 0.999))
    sr = None
    if cfg.get("sr", False):
        solver = cfg.get("solver", "cg")
        if solver not in ("cg", "dense", "minsr"):
            raise ConfigError(f"unknown SR solver {solver!r}; choose 'cg', 'dense' or 'minsr'")
        shift = cfg.get("diag_shift", 0.01)
        if not isinstance(shift, (int, float)) or shift < 0:
            raise ConfigError(f"[optimizer] diag_shift must be >= 0, got {shift!r}")
        final = cfg.get("diag_shift_final")
        if final is not None and (not isinstance(final, (int, float)) or final <= 0 or shift <= 0):
            raise ConfigError(f"[optimizer] diag_shift_final must be > 0 (and diag_shift > 0), got {final!r}")
        sr = SR(
            diag_shift=float(shift),
            diag_shift_final=None if final is None else float(final),
            decay_steps=int(cfg.get("diag_shift_steps", n_steps)),
            solver=solver,
            cg_maxiter=int(cfg.get("cg_maxiter", 200)),
            cg_tol=float(cfg.get("cg_tol", 1e-10)),
            chunk_size=chunk_size,
            minsr_rcond=float(cfg.get("minsr_rcond", 0.0)),
            minsr_holomorphic=bool(cfg.get("minsr_holomorphic", False)),
        )
    return Optimizer(tx, schedule, sr, guard if guard is not None else StepGuard())


__all__ = ["KINDS", "GuardState", "Optimizer", "SR", "StepGuard", "build_guard", "build_optimizer", "build_schedule"]
