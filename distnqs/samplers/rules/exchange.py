"""Exchange move: swap the spins of a random bond (conserves total Sz)."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp


@dataclass(frozen=True)
class ExchangeRule:
    """Pick one pair ``(i, j)`` of ``pairs`` uniformly and swap ``s_i``, ``s_j``.

    ``pairs`` is a tuple of site pairs (usually the lattice bonds). A swap of
    equal spins leaves the configuration unchanged (a rejected move in effect).
    """

    pairs: tuple
    conserves_magnetization = True

    def transition(self, key, sigma):
        n_chains = sigma.shape[0]
        pairs = jnp.asarray(self.pairs, dtype=jnp.int32)
        k = jax.random.randint(key, (n_chains,), 0, pairs.shape[0])
        i, j = pairs[k, 0], pairs[k, 1]
        rows = jnp.arange(n_chains)
        si, sj = sigma[rows, i], sigma[rows, j]
        return sigma.at[rows, i].set(sj).at[rows, j].set(si)
