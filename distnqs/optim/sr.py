r"""Stochastic reconfiguration (natural gradient) as a preconditioner.

Solves :math:`(S + \epsilon\,1)\,x = \nabla_\theta E` for the update
direction :math:`x`, with :math:`S` the quantum geometric tensor
(:mod:`distnqs.estimators.qgt`) and :math:`\epsilon` the diagonal shift.
The direction then goes through an optax transformation (usually plain SGD,
:math:`\theta \leftarrow \theta - \eta x`), so learning-rate schedules and
clipping compose as with any gradient.

Solvers: ``cg`` (matrix-free conjugate gradient, :mod:`distnqs.optim.cg`, with a stopping
decision shared by all ranks; every iteration costs one
S.v, i.e. one allreduce, plus one per step for :math:`\langle O\rangle`), ``dense`` (forms :math:`S`, Cholesky solve;
for models with up to a few thousand parameters) and ``minsr`` (the same update in sample
space, :math:`x = \bar O^T(\bar O\bar O^T+\epsilon)^{-1}\bar\varepsilon`, distributed over the ranks:
:mod:`distnqs.optim.minsr`; for more parameters than samples). ``minsr`` needs the local
energies and their mean (``e_loc``, ``e_mean``) where the others need the gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from distnqs.estimators.qgt import mean_log_derivative, qgt_dense, qgt_matvec
from distnqs.optim.cg import conjugate_gradient, vdot_real_tree
from distnqs.optim.minsr import minsr_solve


@dataclass(frozen=True)
class SR:
    diag_shift: float = 0.01
    diag_shift_final: float | None = None  # geometric decay to this value over decay_steps
    decay_steps: int = 1
    solver: str = "cg"
    cg_maxiter: int = 200
    cg_tol: float = 1e-10
    chunk_size: int | None = None
    minsr_rcond: float = 0.0  # minsr: > 0 drops eigenvalues of T below minsr_rcond * max (pseudo-inverse)
    minsr_holomorphic: bool = False  # minsr: complex form for holomorphic networks with complex parameters

    def shift(self, step):
        r""":math:`\epsilon(t) = \epsilon_0 (\epsilon_1/\epsilon_0)^{\min(t/T, 1)}` (constant without ``diag_shift_final``).

        A large shift at the start tempers the first natural-gradient steps
        from a nearly uniform state, where :math:`S` is tiny and :math:`S^{-1}g` huge.
        """
        if self.diag_shift_final is None or step is None:
            return self.diag_shift
        frac = jnp.minimum(jnp.asarray(step, jnp.float64) / max(1, self.decay_steps), 1.0)
        return self.diag_shift * (self.diag_shift_final / self.diag_shift) ** frac

    def solve(self, log_psi, params, samples, grad, n_total, step=None, e_loc=None, e_mean=None):
        """:math:`x = (S + \\epsilon)^{-1}\\nabla E` as a pytree like ``params``."""
        return self.solve_with_info(log_psi, params, samples, grad, n_total, step, e_loc=e_loc, e_mean=e_mean)[0]

    def solve_with_info(self, log_psi, params, samples, grad, n_total, step=None, shift_scale=1.0, e_loc=None, e_mean=None):
        r"""``(x, xSx)``: the direction and :math:`x^\dagger S x` (for the step-size guard).

        ``shift_scale`` multiplies :math:`\epsilon` (the divergence guard doubles it
        after a rollback). The CG solver is :func:`distnqs.optim.cg.conjugate_gradient`:
        its stopping decision is shared by all ranks, and a non-finite gradient gives
        a NaN direction, never a silent zero. ``minsr`` uses ``e_loc`` (this rank's local
        energies) and ``e_mean`` (their mean over all ranks) instead of ``grad``.
        """
        eps = self.shift(step) * shift_scale
        if self.solver == "minsr":
            if e_loc is None or e_mean is None:
                raise ValueError("the minsr solver needs the local energies e_loc and their mean e_mean")
            return minsr_solve(log_psi, params, samples, e_loc, e_mean, n_total, eps, self.minsr_rcond, self.minsr_holomorphic)
        if self.solver == "dense":
            g_flat, unravel = ravel_pytree(grad)
            S = qgt_dense(log_psi, params, samples, n_total)
            A = S + eps * jnp.eye(S.shape[0], dtype=S.dtype)
            c, low = jax.scipy.linalg.cho_factor(A)
            x = jax.scipy.linalg.cho_solve((c, low), g_flat)
            return unravel(x), jnp.real(jnp.vdot(x, S @ x))

        mean_o = mean_log_derivative(log_psi, params, samples, n_total, self.chunk_size)

        def matvec(v):
            Sv = qgt_matvec(log_psi, params, samples, v, n_total, self.chunk_size, mean_o)
            return jax.tree_util.tree_map(lambda a, b: a + eps * b, Sv, v)

        x, info = conjugate_gradient(matvec, grad, tol=self.cg_tol, maxiter=self.cg_maxiter)
        return x, info["xAx"] - eps * vdot_real_tree(x, x)
