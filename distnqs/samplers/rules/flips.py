r"""Moves that flip a few sites: the part of a rule the fast (look-up table) samplers use.

A *flip rule* draws, per chain and move, ``k`` candidate sites
(``random_sites``) and says which of them change (``flip_mask``); the
proposal is

.. math::  s'_i = \begin{cases} -s_i & i \in F,\ \text{mask}_i \\ s_i & \text{otherwise,} \end{cases}

which is what :func:`apply_flips` computes. A single-spin flip has ``k = 1``
and an always-true mask; an exchange of sites :math:`i, j` has ``k = 2`` and
flips both exactly when :math:`s_i \ne s_j` (a swap of equal spins changes
nothing). Knowing the flipped sites lets an ansatz with look-up tables
(:class:`distnqs.models.rbm.RBMFastUpdate`) compute
:math:`\log\psi(s') - \log\psi(s)` without a forward pass.
"""

from __future__ import annotations

import jax.numpy as jnp


def apply_flips(sigma, sites, mask):
    r"""``sigma`` ``(n_chains, N)`` with :math:`s_i \to -s_i` at ``sites[c, q]`` where ``mask[c, q]``.

    ``sites`` and ``mask`` have shape ``(n_chains, k)``; the sites of one row are distinct.
    """
    rows = jnp.arange(sigma.shape[0])[:, None]
    return sigma.at[rows, sites].multiply(jnp.where(mask, -1.0, 1.0).astype(sigma.dtype))
