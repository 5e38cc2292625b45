r"""Local estimators of operators on a variational wave function.

.. math::  O_\mathrm{loc}(s) = \sum_{s'} O_{s s'} \frac{\psi(s')}{\psi(s)}
           = \sum_{s'} O_{s s'}\, e^{\log\psi(s') - \log\psi(s)}

The connected configurations :math:`s'` and matrix elements come from the
NetKet jax operator (``get_conn_padded``), so any ``DiscreteJaxOperator``
works. Samples are processed in chunks of ``chunk_size`` with ``lax.map`` so
that the ``(chunk, n_conn, N)`` buffer of connected configurations, not
``(batch, n_conn, N)``, bounds the memory (a 21x21 TFIM has 442 connected
elements per sample).

With ``fast_update`` (an ansatz's look-up tables, :mod:`distnqs.models.base`)
and a built-in Hamiltonian (its structure recorded by the builder,
:mod:`distnqs.operators.spin_flip`), the ratios :math:`\psi(s')/\psi(s)` come
from the tables instead of forward passes of the connected configurations.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def chunked_map(fn, xs, chunk_size):
    """Apply ``fn`` to the pytree ``xs`` in chunks of its leading axis.

    Equal to ``fn(xs)`` for row-wise ``fn``; the last chunk is padded with
    copies of the last row and the padding is cut from the result.
    """
    leaves = jax.tree_util.tree_leaves(xs)
    n = leaves[0].shape[0]
    if chunk_size is None or chunk_size >= n:
        return fn(xs)
    n_chunks = -(-n // chunk_size)
    pad = n_chunks * chunk_size - n

    def split(a):
        if pad:
            a = jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)], axis=0)
        return a.reshape(n_chunks, chunk_size, *a.shape[1:])

    out = jax.lax.map(fn, jax.tree_util.tree_map(split, xs))
    return jax.tree_util.tree_map(lambda o: o.reshape(n_chunks * chunk_size, *o.shape[2:])[:n], out)


# Connected configurations per forward pass of the generic path on CPU when no chunk size is given.
# XLA's CPU runtime streams every intermediate of a (samples x connections) batch of forward passes
# through memory; batches that stay in cache are several times faster (NAQS, 4x4 Heisenberg, 25
# connections, 1024 samples, one core: 0.86 s unchunked, 0.42 s at 8 samples a chunk, 0.38 s at 2;
# benchmarks/bench_chunking.py). Accelerators want large batches: no automatic chunks there.
AUTO_CHUNK_CONFIGS = 64


def auto_chunk_size(n_conn: int, chunk_size=None):
    """``chunk_size`` if given, else on CPU the samples per chunk that give about
    :data:`AUTO_CHUNK_CONFIGS` connected configurations (at least one sample), else ``None``."""
    if chunk_size is not None or jax.default_backend() != "cpu":
        return chunk_size
    return max(1, AUTO_CHUNK_CONFIGS // max(1, int(n_conn)))


def local_values(log_psi, params, operator, samples, log_psi_samples=None, chunk_size=None):
    r""":math:`O_\mathrm{loc}(s)` for each row ``s`` of ``samples`` (shape ``(n, N)``).

    ``log_psi(params, x)`` maps ``(b, N)`` to ``(b,)``; ``log_psi_samples``
    (optional) are the already known :math:`\log\psi(s)`. Without ``chunk_size``,
    :func:`auto_chunk_size` picks one on CPU.
    """
    if log_psi_samples is None:
        log_psi_samples = log_psi(params, samples)
    chunk_size = auto_chunk_size(operator.max_conn_size, chunk_size)

    def chunk(args):
        s, lp = args
        conn, mels = operator.get_conn_padded(s)  # (b, c, N), (b, c)
        b, c, n = conn.shape
        lp_conn = log_psi(params, conn.reshape(b * c, n)).reshape(b, c)
        return jnp.sum(mels * jnp.exp(lp_conn - lp[:, None]), axis=1)

    return chunked_map(chunk, (samples, log_psi_samples), chunk_size)


def local_energy(log_psi, params, hamiltonian, samples, log_psi_samples=None, chunk_size=None, fast_update=None):
    r"""Local energies :math:`E_\mathrm{loc}(s) = \sum_{s'} H_{ss'}\psi(s')/\psi(s)`.

    ``fast_update``: the ansatz's look-up-table protocol (``Ansatz.fast_update``),
    used when ``hamiltonian`` is a built-in one (and the protocol's optional
    ``usable(flips)`` agrees); otherwise the generic path.
    """
    from distnqs.operators.spin_flip import flip_terms, local_energy_from_flips

    terms = flip_terms(hamiltonian)
    if fast_update is not None and terms is not None and getattr(fast_update, "usable", lambda flips: True)(terms.flips):
        return local_energy_from_flips(fast_update, params, terms, samples, chunk_size)
    return local_values(log_psi, params, hamiltonian, samples, log_psi_samples, chunk_size)
