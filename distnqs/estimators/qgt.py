r"""Quantum geometric tensor (S matrix) of stochastic reconfiguration.

For real parameters,

.. math::  S_{kl} = \mathrm{Re}\,\big\langle \Delta O_k^*\,\Delta O_l \big\rangle,
           \qquad \Delta O_k = O_k - \langle O_k\rangle ,

averaged over the samples of all ranks. :func:`qgt_matvec` applies it without
forming it:

.. math::  (S v)_k = \frac1N\,\mathrm{Re}\sum_i O_{ik}\,\big(w_i - \bar w\big)^*,
           \qquad w = O v

(one jvp, one global mean of :math:`w`, one vjp, one allreduce of a
parameter-sized vector per product). :func:`qgt_dense` forms :math:`S`
explicitly (small models). SR then solves :math:`(S + \epsilon\,1)\,x = \nabla E`
(:mod:`distnqs.optim.sr`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from distnqs import comm
from distnqs.estimators.jacobian import jvp_batch, vjp_sum


def qgt_matvec(log_psi, params, samples, v, n_total, chunk_size=None):
    """:math:`S v` for a pytree ``v`` like ``params`` (reduced over ranks)."""
    w = jvp_batch(log_psi, params, samples, v, chunk_size)
    w = w - comm.sum(jnp.sum(w)) / n_total
    return comm.sum(vjp_sum(log_psi, params, samples, jnp.conj(w) / n_total, chunk_size))


def centered_jacobian(log_psi, params, samples, n_total):
    r"""Dense :math:`\Delta O` as real arrays ``(re, im)`` of shape ``(n, P)`` (global centering)."""
    flat, unravel = ravel_pytree(params)

    def f(p_flat, s):
        return log_psi(unravel(p_flat), s[None])[0]

    jac_re = jax.vmap(jax.grad(lambda p, s: jnp.real(f(p, s))), in_axes=(None, 0))(flat, samples)
    jac_im = jax.vmap(jax.grad(lambda p, s: jnp.imag(f(p, s).astype(jnp.complex128))), in_axes=(None, 0))(flat, samples)
    jac_re = jac_re - comm.sum(jnp.sum(jac_re, axis=0)) / n_total
    jac_im = jac_im - comm.sum(jnp.sum(jac_im, axis=0)) / n_total
    return jac_re, jac_im


def qgt_dense(log_psi, params, samples, n_total):
    r""":math:`S` as a dense ``(P, P)`` matrix, :math:`S = (\Delta O_r^T\Delta O_r + \Delta O_i^T\Delta O_i)/N`."""
    jr, ji = centered_jacobian(log_psi, params, samples, n_total)
    return comm.sum(jr.T @ jr + ji.T @ ji) / n_total
