"""Exchange move: swap the spins of a random bond (conserves total Sz)."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from distnqs.samplers.rules.flips import apply_flips


@dataclass(frozen=True)
class ExchangeRule:
    r"""Pick one pair ``(i, j)`` of ``pairs`` uniformly and swap ``s_i``, ``s_j``.

    ``pairs`` is a tuple of site pairs (usually the lattice bonds). A swap of
    equal spins leaves the configuration unchanged (a rejected move in effect);
    a swap of opposite spins is the flip of both, :math:`s_i, s_j \to -s_i, -s_j`,
    which is how the flip-rule protocol (``random_sites``, ``flip_mask``) states it.
    """

    pairs: tuple
    conserves_magnetization = True
    n_flip_sites = 2

    def random_sites(self, key, shape, n_sites=None):
        """One uniform pair per move: integer array ``shape + (2,)``."""
        pairs = jnp.asarray(self.pairs, dtype=jnp.int32)
        return pairs[jax.random.randint(key, shape, 0, pairs.shape[0])]

    def flip_mask(self, sigma, sites):
        r"""Both sites flip when :math:`s_i \ne s_j`, neither otherwise."""
        rows = jnp.arange(sigma.shape[0])
        differ = sigma[rows, sites[:, 0]] != sigma[rows, sites[:, 1]]
        return jnp.stack([differ, differ], axis=1)

    def transition(self, key, sigma):
        sites = self.random_sites(key, (sigma.shape[0],))
        return apply_flips(sigma, sites, self.flip_mask(sigma, sites))
