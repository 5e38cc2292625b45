"""Single-spin flip: pick a site uniformly at random and flip it."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp


@dataclass(frozen=True)
class LocalRule:
    conserves_magnetization = False

    def transition(self, key, sigma):
        """:math:`s'_i = -s_i` at one random site ``i`` per chain."""
        n_chains, n_sites = sigma.shape
        site = jax.random.randint(key, (n_chains,), 0, n_sites)
        return sigma.at[jnp.arange(n_chains), site].multiply(-1)
