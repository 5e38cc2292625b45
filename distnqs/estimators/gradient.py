r"""Energy gradient for real parameters :math:`\theta` (complex ones enter as real pairs):

.. math::  \partial_{\theta_k} E = 2\,\mathrm{Re}\,\big\langle (E_\mathrm{loc} - \langle E\rangle)^*\, O_k \big\rangle
           = \frac{2}{N}\,\mathrm{Re}\sum_i O_{ik}\,(E_\mathrm{loc}(s_i) - \bar E)^*

summed over the samples of all ranks (:math:`N` in all), where
:math:`O_k = \partial_{\theta_k}\log\psi`. For autoregressive (normalized)
states this is also the estimator of eq. (4) of Sharir et al., PRL 124, 020503.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from distnqs import comm
from distnqs.estimators.jacobian import vjp_sum


def energy_gradient(log_psi, params, samples, e_loc, e_mean, n_total, chunk_size=None):
    """:math:`\\nabla_\\theta E` as a pytree like ``params`` (already summed over ranks)."""
    cotangent = jnp.conj(e_loc - e_mean) / n_total
    g = vjp_sum(log_psi, params, samples, cotangent, chunk_size)
    return comm.sum(jax.tree_util.tree_map(lambda x: 2.0 * x, g))
