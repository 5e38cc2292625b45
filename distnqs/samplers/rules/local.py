"""Single-spin flip: pick a site uniformly at random and flip it."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from distnqs.samplers.rules.flips import apply_flips


@dataclass(frozen=True)
class LocalRule:
    conserves_magnetization = False
    n_flip_sites = 1  # sites a move may flip (the flip-rule protocol, rules/flips.py)

    def random_sites(self, key, shape, n_sites):
        """One uniform site per move: integer array ``shape + (1,)`` in ``[0, n_sites)``."""
        return jax.random.randint(key, (*shape, 1), 0, n_sites)

    def flip_mask(self, sigma, sites):
        """Every drawn site flips."""
        return jnp.ones(sites.shape, dtype=bool)

    def transition(self, key, sigma):
        """:math:`s'_i = -s_i` at one random site ``i`` per chain."""
        sites = self.random_sites(key, (sigma.shape[0],), sigma.shape[1])
        return apply_flips(sigma, sites, self.flip_mask(sigma, sites))
