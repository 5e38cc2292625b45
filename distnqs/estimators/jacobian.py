r"""Chunked products with the log-derivative Jacobian :math:`O_{ik} = \partial_{\theta_k}\log\psi(s_i)`.

For real parameters :math:`\theta` and complex :math:`\log\psi`, JAX's
vector-Jacobian product with cotangent :math:`c` is
:math:`\mathrm{Re}\sum_i c_i O_{ik}`. Both products below run over the
samples in chunks (``lax.scan``), so memory is that of one chunk whatever the
number of samples.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from distnqs.operators.local_energy import chunked_map


def _match(ct, out):
    """Cotangent in the dtype of log psi (its real part for a real network)."""
    return ct.astype(out.dtype) if jnp.iscomplexobj(out) else jnp.real(ct).astype(out.dtype)


def vjp_sum(log_psi, params, samples, cotangent, chunk_size=None):
    r""":math:`g_k = \mathrm{Re}\sum_i c_i\,O_{ik}` (this rank's samples), as a pytree like ``params``."""

    def one(s, c):
        out, pullback = jax.vjp(lambda p: log_psi(p, s), params)
        return pullback(_match(c, out))[0]

    n = samples.shape[0]
    if chunk_size is None or chunk_size >= n:
        return one(samples, cotangent)
    n_chunks = -(-n // chunk_size)
    pad = n_chunks * chunk_size - n
    if pad:  # zero cotangent on the padding rows: they contribute nothing
        samples = jnp.concatenate([samples, jnp.repeat(samples[-1:], pad, axis=0)])
        cotangent = jnp.concatenate([cotangent, jnp.zeros((pad,), cotangent.dtype)])
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)

    def body(acc, chunk):
        g = one(*chunk)
        return jax.tree_util.tree_map(jnp.add, acc, g), None

    acc, _ = jax.lax.scan(
        body, zeros, (samples.reshape(n_chunks, chunk_size, -1), cotangent.reshape(n_chunks, chunk_size))
    )
    return acc


def jvp_batch(log_psi, params, samples, tangent, chunk_size=None):
    r""":math:`w_i = \sum_k O_{ik} v_k` for every sample (shape ``(n,)``)."""

    def one(s):
        return jax.jvp(lambda p: log_psi(p, s), (params,), (tangent,))[1]

    return chunked_map(one, samples, chunk_size)
