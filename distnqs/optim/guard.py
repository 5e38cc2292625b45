r"""Step guard: decides, inside the jitted step, whether an update may become state.

Three checks on every optimization step (all ``jnp.where`` decisions, static
shapes, so the step stays one jitted function):

1. **Finite values.** The energy mean, its variance, the gradient
   :math:`g`, the update and the new parameters must be finite. The first
   quantity that is not (in that order) is reported as ``code``
   (:data:`QUANTITIES`) with its value (norms for vectors); the step is then
   not applied and the driver stops (or rolls back).
2. **Variance alarm.** A variance :math:`\sigma^2_t > K\,\mathrm{median}(\sigma^2_{t-H..t-1})`
   (``variance_alarm`` :math:`K`, over the last :data:`HISTORY` steps, once
   :data:`MIN_HISTORY` are known) means a few rare samples dominate the
   estimate: the step is rejected (no update) and the next step draws new
   samples. Every finite variance enters the history, so a lasting change
   of scale is absorbed after about :math:`H/2` steps.
3. **Step size.** With SR, the Fubini-Study length of the update
   :math:`\delta\theta = -\eta x` is :math:`\eta^2 x^\dagger S x` (the
   squared distance the state moves; :math:`x^\dagger S x = x^\dagger(S+\epsilon)x - \epsilon|x|^2`
   comes from the CG solve at no extra cost). Above ``max_fs_length`` (or
   with :math:`|\delta\theta|` above ``max_update_norm``) the update is
   scaled down to the cap (``step_guard = "rescale"``) or rejected
   (``"reject"``). For Adam the same :math:`\eta` (the schedule's) is used.

The guard's state (:class:`GuardState`) travels in the optimizer state, so it
is checkpointed with it and a resumed run stays bit-identical. When nothing
fires every selection keeps the unguarded values exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from distnqs.errors import ConfigError
from distnqs.optim.cg import all_finite, vdot_real_tree

HISTORY = 64  # steps in the running median of the variance
MIN_HISTORY = 16  # the alarm is armed once this many variances are known
QUANTITIES = (None, "energy", "variance", "gradient", "update", "parameters")
ACTIONS = ("none", "rescaled", "rejected (step size)", "rejected (variance alarm)", "diverged")
MODES = ("rescale", "reject")


class GuardState(NamedTuple):
    variance_history: jax.Array  # (HISTORY,), newest first; the first n_known entries are valid
    n_known: jax.Array
    lr_scale: jax.Array  # multiplies the learning rate (halved by each rollback)
    shift_scale: jax.Array  # multiplies the SR diagonal shift (doubled by each rollback)
    n_rejected: jax.Array
    n_rescaled: jax.Array
    n_rollbacks: jax.Array


@dataclass(frozen=True)
class StepGuard:
    max_update_norm: float = 0.0  # 0: no cap on |update|
    max_fs_length: float = 10.0  # 0: no cap on eta^2 x^T S x (SR only)
    mode: str = "rescale"
    variance_alarm: float = 20.0  # 0: off

    def init(self) -> GuardState:
        return GuardState(
            variance_history=jnp.zeros((HISTORY,), jnp.float64),
            n_known=jnp.asarray(0, jnp.int32),
            lr_scale=jnp.asarray(1.0, jnp.float64),
            shift_scale=jnp.asarray(1.0, jnp.float64),
            n_rejected=jnp.asarray(0, jnp.int32),
            n_rescaled=jnp.asarray(0, jnp.int32),
            n_rollbacks=jnp.asarray(0, jnp.int32),
        )

    def limit(self, updates, fs_length):
        """``(updates, scale, too_big)``: the update capped by its norm and Fubini-Study length."""
        norm = jnp.sqrt(vdot_real_tree(updates, updates))
        scale = jnp.asarray(1.0, jnp.float64)
        if self.max_update_norm > 0:
            scale = jnp.minimum(scale, self.max_update_norm / jnp.where(norm > 0, norm, 1.0))
        if self.max_fs_length > 0:
            fs = jnp.where(jnp.isfinite(fs_length) & (fs_length > 0), fs_length, 0.0)
            scale = jnp.minimum(scale, jnp.where(fs > 0, jnp.sqrt(self.max_fs_length / jnp.where(fs > 0, fs, 1.0)), 1.0))
        too_big = scale < 1.0
        if self.mode == "rescale":
            updates = jax.tree_util.tree_map(lambda u: jnp.where(too_big, u * scale.astype(u.real.dtype), u), updates)
        return updates, scale, norm, too_big

    def alarm(self, state: GuardState, variance):
        """True when ``variance`` exceeds ``variance_alarm`` times the running median."""
        if self.variance_alarm <= 0:
            return jnp.asarray(False)
        valid = jnp.arange(HISTORY) < state.n_known
        median = jnp.nanmedian(jnp.where(valid, state.variance_history, jnp.nan))
        return (state.n_known >= MIN_HISTORY) & (variance > self.variance_alarm * median)

    def record(self, state: GuardState, variance, accept, rescaled, rejected) -> GuardState:
        finite = jnp.isfinite(variance)
        history = jnp.where(finite, jnp.roll(state.variance_history, 1).at[0].set(variance), state.variance_history)
        return state._replace(
            variance_history=history,
            n_known=jnp.minimum(state.n_known + finite.astype(jnp.int32), HISTORY),
            n_rejected=state.n_rejected + rejected.astype(jnp.int32),
            n_rescaled=state.n_rescaled + (rescaled & accept).astype(jnp.int32),
        )


def tree_norm(tree):
    return jnp.sqrt(vdot_real_tree(tree, tree))


def first_nonfinite(checks):
    """``(code, value)`` of the first ``(finite?, value)`` pair that is not finite (code 0: all finite)."""
    code = jnp.asarray(0, jnp.int32)
    value = jnp.asarray(0.0, jnp.float64)
    for i, (ok, v) in reversed(list(enumerate(checks, start=1))):
        code = jnp.where(ok, code, i)
        value = jnp.where(ok, value, jnp.asarray(v, jnp.float64))
    return code, value


def guarded_update(guard: StepGuard, state: GuardState, params, updates, *, energy, variance, grad, direction, fs_length):
    """Apply ``updates`` to ``params`` unless the guard objects.

    Returns ``(params, accept, new_state, report)``; ``report`` holds ``code``
    (index into :data:`QUANTITIES`), ``value``, ``action`` (index into
    :data:`ACTIONS`), ``scale``, ``update_norm`` and ``fs_length``.
    """
    alarm = guard.alarm(state, variance)
    updates, scale, norm, too_big = guard.limit(updates, fs_length)
    new_params = jax.tree_util.tree_map(lambda p, u: p + u, params, updates)
    e = jnp.real(energy)
    code, value = first_nonfinite([
        (jnp.isfinite(energy), e),
        (jnp.isfinite(variance), variance),
        (all_finite(grad), tree_norm(grad)),
        (all_finite(direction) & all_finite(updates), jnp.where(all_finite(direction), norm, tree_norm(direction))),
        (all_finite(new_params), tree_norm(new_params)),
    ])
    rejected_size = too_big & (guard.mode == "reject")
    accept = (code == 0) & ~alarm & ~rejected_size
    action = jnp.where(code > 0, 4, jnp.where(alarm, 3, jnp.where(rejected_size, 2, jnp.where(too_big, 1, 0))))
    params = jax.tree_util.tree_map(lambda new, old: jnp.where(accept, new, old), new_params, params)
    new_state = guard.record(state, variance, accept, too_big, (code == 0) & ~accept)
    report = {"code": code, "value": value, "action": action.astype(jnp.int32), "scale": scale, "update_norm": norm, "fs_length": fs_length}
    return params, accept, new_state, report


def build_guard(run_cfg: dict) -> StepGuard:
    """The guard of a ``[run]`` table (keys ``max_update_norm``, ``max_fs_length``, ``step_guard``, ``variance_alarm``)."""
    mode = run_cfg.get("step_guard", "rescale")
    if mode not in MODES:
        raise ConfigError(f"[run] step_guard must be one of: {', '.join(MODES)}; got {mode!r}")
    out = {}
    for key in ("max_update_norm", "max_fs_length", "variance_alarm"):
        value = run_cfg.get(key, getattr(StepGuard, key))
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
            raise ConfigError(f"[run] {key} must be a number >= 0 (0: off), got {value!r}")
        out[key] = float(value)
    return StepGuard(mode=mode, **out)
