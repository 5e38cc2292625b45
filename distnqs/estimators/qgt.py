r"""Quantum geometric tensor (S matrix) of stochastic reconfiguration.

For real parameters,

.. math::  S_{kl} = \mathrm{Re}\,\big\langle \Delta O_k^*\,\Delta O_l \big\rangle,
           \qquad \Delta O_k = O_k - \langle O_k\rangle ,

averaged over the samples of all ranks. :func:`qgt_matvec` applies it without
forming it:

.. math::  (S v)_k = \frac1N\,\mathrm{Re}\sum_i O_{ik}\,\big(w_i - \bar w\big)^*,
           \qquad w = O v

(one jvp, the global mean :math:`\bar w = \langle O\rangle\cdot v` from
:math:`\langle O\rangle` computed once per step, one vjp, one allreduce of
a parameter-sized vector per product). :func:`qgt_dense` forms :math:`S`
explicitly (small models). SR then solves :math:`(S + \epsilon\,1)\,x = \nabla E`
(:mod:`distnqs.optim.sr`).

Every function takes optional ``weights`` :math:`p_i` (this rank's samples,
summing to 1 over all ranks) in place of the uniform :math:`1/N`: averages
become :math:`\sum_i p_i x_i`. t-VMC with full enumeration
(:mod:`distnqs.dynamics`) uses :math:`p_i = |\psi(s_i)|^2/\sum_j|\psi(s_j)|^2`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from distnqs import comm
from distnqs.estimators.jacobian import jvp_batch, vjp_sum


def _weights(samples, n_total, weights):
    return jnp.full((samples.shape[0],), 1.0 / n_total) if weights is None else weights


def mean_log_derivative(log_psi, params, samples, n_total, chunk_size=None, weights=None):
    r""":math:`\langle O_k\rangle = \frac1N\sum_i O_{ik}` over all ranks, as ``(re, im)`` pytrees like ``params``
    (``im`` is ``None`` for a real :math:`\log\psi`): two vjps with cotangents :math:`1/N` and :math:`-i/N`."""
    c = _weights(samples, n_total, weights)
    re = comm.sum(vjp_sum(log_psi, params, samples, c, chunk_size))
    if not jnp.iscomplexobj(jax.eval_shape(log_psi, params, samples[:1])):
        return re, None
    return re, comm.sum(vjp_sum(log_psi, params, samples, -1j * c, chunk_size))


def _dot(a, b):
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def qgt_matvec(log_psi, params, samples, v, n_total, chunk_size=None, mean_o=None, weights=None):
    r""":math:`S v` for a pytree ``v`` like ``params`` (reduced over ranks).

    With ``mean_o`` (:func:`mean_log_derivative`, computed once per step) the
    mean :math:`\bar w = \langle O\rangle\cdot v` needs no allreduce, so a CG
    iteration synchronizes the ranks once instead of twice.
    """
    w = jvp_batch(log_psi, params, samples, v, chunk_size)
    if mean_o is None:
        w_mean = comm.sum(jnp.sum(w)) / n_total if weights is None else comm.sum(jnp.sum(weights * w))
    else:
        re, im = mean_o
        w_mean = _dot(re, v) if im is None else _dot(re, v) + 1j * _dot(im, v)
    w = w - w_mean
    return comm.sum(vjp_sum(log_psi, params, samples, jnp.conj(w) * _weights(samples, n_total, weights), chunk_size))


def centered_jacobian(log_psi, params, samples, n_total, weights=None):
    r"""Dense :math:`\Delta O` as real arrays ``(re, im)`` of shape ``(n, P)`` (global centering)."""
    flat, unravel = ravel_pytree(params)

    def f(p_flat, s):
        return log_psi(unravel(p_flat), s[None])[0]

    jac_re = jax.vmap(jax.grad(lambda p, s: jnp.real(f(p, s))), in_axes=(None, 0))(flat, samples)
    jac_im = jax.vmap(jax.grad(lambda p, s: jnp.imag(f(p, s).astype(jnp.complex128))), in_axes=(None, 0))(flat, samples)
    if weights is None:
        jac_re = jac_re - comm.sum(jnp.sum(jac_re, axis=0)) / n_total
        jac_im = jac_im - comm.sum(jnp.sum(jac_im, axis=0)) / n_total
    else:
        jac_re = jac_re - comm.sum(weights @ jac_re)
        jac_im = jac_im - comm.sum(weights @ jac_im)
    return jac_re, jac_im


def qgt_dense(log_psi, params, samples, n_total, weights=None, jacobian=None):
    r""":math:`S` as a dense ``(P, P)`` matrix, :math:`S = (\Delta O_r^T\Delta O_r + \Delta O_i^T\Delta O_i)/N`
    (``jacobian``: the output of :func:`centered_jacobian`, when already computed)."""
    jr, ji = centered_jacobian(log_psi, params, samples, n_total, weights) if jacobian is None else jacobian
    if weights is None:
        return comm.sum(jr.T @ jr + ji.T @ ji) / n_total
    return comm.sum((jr.T * weights) @ jr + (ji.T * weights) @ ji)
