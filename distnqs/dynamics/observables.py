r"""Observables of a quench, as local values per sample.

- :math:`\sigma^x = \frac1N\sum_i \sigma^x_i`, local value
  :math:`\frac1N\sum_i \psi(s^{(i)})/\psi(s)` (:math:`s^{(i)}`: spin :math:`i` flipped);
- :math:`\sigma^z\sigma^z = \frac1{N_b}\sum_{\langle ij\rangle} s_i s_j` over the
  :math:`N_b` nearest-neighbour bonds of the lattice (diagonal).

Exact counterparts for the same conventions: :mod:`distnqs.dynamics.exact`.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from distnqs.operators.local_energy import chunked_map


def sx_local(log_psi, params, samples, log_psi_samples, chunk_size=None):
    r""":math:`\frac1N\sum_i\psi(s^{(i)})/\psi(s)` for each row of ``samples`` ``(n, N)``."""
    n_sites = samples.shape[-1]
    flip = 1.0 - 2.0 * jnp.eye(n_sites, dtype=samples.dtype)

    def chunk(args):
        s, lp = args
        flipped = (s[:, None, :] * flip[None]).reshape(-1, n_sites)
        lp_f = log_psi(params, flipped).reshape(s.shape[0], n_sites)
        return jnp.mean(jnp.exp(lp_f - lp[:, None]), axis=1)

    return chunked_map(chunk, (samples, log_psi_samples), chunk_size)


def szsz_local(samples, pairs):
    r""":math:`\frac1{N_b}\sum_{\langle ij\rangle} s_i s_j` for each row of ``samples``."""
    pairs = np.asarray(pairs, dtype=np.int32)
    return jnp.mean(samples[:, pairs[:, 0]] * samples[:, pairs[:, 1]], axis=1)
