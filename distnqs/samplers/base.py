r"""Sampler protocol and the mutable part of a sampler (its state pytree).

A sampler is an immutable description (a frozen dataclass) with two pure
functions, following NetKet's split of sampler and ``SamplerState``:

- ``init_state(log_psi, params, key) -> SamplerState``
- ``sample(log_psi, params, state, key) -> (samples, state, n_accepted)``

``samples`` has shape ``(n_chains, n_samples_per_chain, N)`` (this rank's
chains; a direct sampler has ``n_samples_per_chain = 1``). Keys come from
:func:`distnqs.comm.step_key` (seed, rank, step), so the state holds no key:
checkpointing the state plus the step reproduces the run exactly.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class SamplerState(NamedTuple):
    """Per-rank chain configurations and running acceptance counters."""

    sigma: jax.Array  # (n_chains, N) current configuration of each chain
    n_accepted: jax.Array  # () int: accepted moves in the last call to sample
    n_proposed: jax.Array  # () int: proposed moves in the last call to sample


def random_spins(key, n_chains: int, n_sites: int, magnetization: int | None = None):
    r"""Uniform random configurations of :math:`\pm1` spins.

    With ``magnetization`` :math:`M = \sum_i s_i` fixed, each row is a random
    permutation of :math:`(N+M)/2` up and :math:`(N-M)/2` down spins.
    """
    if magnetization is None:
        return jnp.where(jax.random.bernoulli(key, 0.5, (n_chains, n_sites)), 1.0, -1.0)
    n_up = (n_sites + int(magnetization)) // 2
    base = jnp.where(jnp.arange(n_sites) < n_up, 1.0, -1.0)
    keys = jax.random.split(key, n_chains)
    return jax.vmap(lambda k: jax.random.permutation(k, base))(keys)
