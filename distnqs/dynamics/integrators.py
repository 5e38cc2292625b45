r"""Explicit Runge-Kutta integrators of :math:`\dot\theta = f(\theta)` (Butcher tableaus).

.. math::  k_i = f\Big(\theta + h\sum_{j<i} a_{ij}k_j\Big), \qquad
           \theta' = \theta + h\sum_i b_i k_i

``euler`` (order 1), ``heun`` (2), ``rk4`` (classical, 4) take a fixed step;
``rk23`` (Bogacki-Shampine, order 3 with an embedded order-2 estimate
:math:`\delta = h\sum_i (b_i - \hat b_i)k_i`, first-same-as-last) adapts the
step so that the error in the S-metric, :math:`\sqrt{\delta^T\,\mathrm{Re}S\,\delta}`
(a Fubini-Study distance between the two solutions), stays below ``rk23_tol``
(see :class:`distnqs.dynamics.evolve.EvolveStep`). Every evaluation of
:math:`f` draws its own samples with its own key: a Monte Carlo
:math:`f` is noisy, so with few samples the adaptive steps also respond to noise.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Tableau(NamedTuple):
    a: tuple  # a[i] = coefficients of k_0..k_{i-1} for stage i
    b: tuple
    order: int
    b_low: tuple | None = None  # embedded lower-order weights (adaptive)


TABLEAUS = {
    "euler": Tableau(a=((),), b=(1.0,), order=1),
    "heun": Tableau(a=((), (1.0,)), b=(0.5, 0.5), order=2),
    "rk4": Tableau(a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)), b=(1 / 6, 1 / 3, 1 / 3, 1 / 6), order=4),
    "rk23": Tableau(
        a=((), (0.5,), (0.0, 0.75), (2 / 9, 1 / 3, 4 / 9)),
        b=(2 / 9, 1 / 3, 4 / 9, 0.0),
        order=3,
        b_low=(7 / 24, 1 / 4, 1 / 3, 1 / 8),
    ),
}


def axpy_tree(y, h, coeffs, ks):
    r""":math:`y + h\sum_j c_j k_j` on pytrees (zero coefficients skipped)."""
    out = y
    for c, k in zip(coeffs, ks):
        if c != 0.0:
            out = jax.tree_util.tree_map(lambda o, kk, c=c: o + (h * c) * kk, out, k)
    return out


def rk_stages(f, y, h, carry, tableau: Tableau, k0=None):
    r"""Stages ``k_i`` of one step; ``f(y, carry, i) -> (k, carry)``. With ``k0`` (FSAL) stage 0 is given.

    Stages :math:`1 \ldots s-1` run as one ``lax.scan`` over the rows of the (zero-padded)
    matrix :math:`a`, so ``f`` (for t-VMC: sampling, local energies and an S solve) is traced
    and compiled once, not once per stage: the compile time of an rk4 or rk23 step is about
    that of one evaluation of ``f`` instead of three or four. ``i`` is a traced stage index.
    """
    n = len(tableau.a)
    if k0 is None:
        k0, carry = f(y, carry, 0)
    if n == 1:
        return [k0], carry
    a = np.zeros((n, n))
    for i, row in enumerate(tableau.a):
        a[i, : len(row)] = row
    ks = jax.tree_util.tree_map(lambda k: jnp.zeros((n, *k.shape), k.dtype).at[0].set(k), k0)

    def stage(state, i):
        ks, carry = state
        coeffs = h * jnp.asarray(a)[i]  # y_i = y + h sum_j a_ij k_j (a_ij = 0 for j >= i)
        y_i = jax.tree_util.tree_map(lambda yy, kk: yy + jnp.tensordot(coeffs.astype(kk.real.dtype), kk, axes=1), y, ks)
        k, carry = f(y_i, carry, i)
        return (jax.tree_util.tree_map(lambda kk, k_new: kk.at[i].set(k_new), ks, k), carry), None

    (ks, carry), _ = jax.lax.scan(stage, (ks, carry), jnp.arange(1, n))
    return [jax.tree_util.tree_map(lambda kk, j=j: kk[j], ks) for j in range(n)], carry
