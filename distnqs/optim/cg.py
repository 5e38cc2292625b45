r"""Conjugate gradient for SR whose stopping decision every MPI rank shares.

Solves :math:`A x = b` for a symmetric positive definite :math:`A` given as a
matrix-free ``matvec`` on pytrees (here :math:`A = S + \epsilon 1`, whose
products are allreduced over ranks).

Why not ``jax.scipy.sparse.linalg.cg``: (1) its loop runs while
:math:`r\cdot r > \mathrm{tol}^2\, b\cdot b`, a comparison each rank evaluates
on its own copy of :math:`r`. An allreduce is not guaranteed to give
bit-identical sums on every rank (the reduction order may depend on the rank),
so one rank can take one more iteration than another: the ranks then wait in
different collectives (a hang) or leave with different parameters (drift).
Here the residual that decides is reduced once more with ``MAX`` (an exact
operation), so the iteration count is identical on all ranks by construction.
(2) For a non-finite :math:`b` its test is false at once and it returns
:math:`x_0 = 0`: a gradient that overflowed becomes a silent zero update and
the parameters freeze on garbage. Here a non-finite :math:`b`, or a residual
that became non-finite, returns :math:`x = \mathrm{NaN}`, which the divergence
guard sees.

The arithmetic is otherwise that of ``jax.scipy.sparse.linalg.cg`` (same
recurrences, same order), so on one rank the iterates are bit-identical to it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from distnqs import comm

_HIGHEST = lax.Precision.HIGHEST


def _vdot_real(x, y):
    r""":math:`\mathrm{Re}\,x^\dagger y` without cross terms (as in jax's cg)."""
    result = jnp.vdot(x.real, y.real, precision=_HIGHEST)
    if jnp.iscomplexobj(x) or jnp.iscomplexobj(y):
        result += jnp.vdot(x.imag, y.imag, precision=_HIGHEST)
    return result


def vdot_real_tree(x, y):
    return sum(jax.tree_util.tree_leaves(jax.tree_util.tree_map(_vdot_real, x, y)))


def all_finite(tree):
    """True when every element of every leaf is finite."""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(tree)]))


def conjugate_gradient(matvec, b, *, tol: float = 1e-10, maxiter: int = 200, shared=comm.max):
    r"""``(x, info)`` with :math:`x \approx A^{-1}b` after at most ``maxiter`` products.

    ``info``: ``iterations``, ``residual2`` (:math:`r\cdot r`, shared over
    ranks) and ``xAx`` (:math:`x^\dagger A x = x\cdot(b - r)`, no extra
    product). ``x`` is NaN when :math:`b` or the final residual is not finite.
    ``shared`` makes a scalar identical on all ranks (``comm.max``).
    """
    x0 = jax.tree_util.tree_map(jnp.zeros_like, b)
    bs = vdot_real_tree(b, b)
    atol2 = jnp.square(tol) * shared(bs)

    r0 = jax.tree_util.tree_map(lambda bi, ai: bi - ai, b, matvec(x0))
    dtype = jnp.result_type(*jax.tree_util.tree_leaves(r0))
    gamma0 = vdot_real_tree(r0, r0).astype(dtype)

    def cond(value):
        _, _, gamma, _, k, rs = value
        return (rs > atol2) & (k < maxiter)

    def body(value):
        x, r, gamma, p, k, _ = value
        Ap = matvec(p)
        alpha = gamma / vdot_real_tree(p, Ap).astype(dtype)
        x_ = jax.tree_util.tree_map(lambda xi, pi: xi + alpha * pi, x, p)
        r_ = jax.tree_util.tree_map(lambda ri, ai: ri - alpha * ai, r, Ap)
        gamma_ = vdot_real_tree(r_, r_).astype(dtype)
        beta = gamma_ / gamma
        p_ = jax.tree_util.tree_map(lambda ri, pi: ri + beta * pi, r_, p)
        return x_, r_, gamma_, p_, k + 1, shared(gamma_.real)

    init = (x0, r0, gamma0, r0, jnp.asarray(0, jnp.int32), shared(gamma0.real))
    x, r, _, _, k, rs = lax.while_loop(cond, body, init)
    ok = jnp.isfinite(bs) & jnp.isfinite(rs)
    x = jax.tree_util.tree_map(lambda xi: jnp.where(ok, xi, jnp.nan), x)
    xAx = vdot_real_tree(x, jax.tree_util.tree_map(lambda bi, ri: bi - ri, b, r))
    return x, {"iterations": k, "residual2": rs, "xAx": xAx}
