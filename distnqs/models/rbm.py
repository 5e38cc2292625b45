r"""Restricted Boltzmann machine (Carleo & Troyer, Science 355, 602 (2017)).

.. math::  \log\psi(s) = \sum_i a_i s_i + \sum_{j=1}^{M} \log\cosh\Big(b_j + \sum_i W_{ij} s_i\Big),
           \quad M = \alpha N

(the hidden units summed out, up to the constant :math:`M\log 2`). Real or
complex parameters (``param_dtype``). Parameter names: ``visible_bias``
:math:`a` (N,), ``kernel`` :math:`W` (N, M), ``hidden_bias`` :math:`b` (M,).
The hidden-unit angles :math:`\theta_j = b_j + \sum_i W_{ij}s_i` are what the
fast samplers update after a flip.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from distnqs.models.activations import log_cosh


class RBM(nn.Module):
    alpha: float = 1.0
    param_dtype: Any = jnp.float64
    use_visible_bias: bool = True
    use_hidden_bias: bool = True
    init_std: float = 0.01

    @nn.compact
    def __call__(self, s):
        n = s.shape[-1]
        m = max(1, int(round(self.alpha * n)))
        init = nn.initializers.normal(self.init_std)
        W = self.param("kernel", init, (n, m), self.param_dtype)
        theta = s.astype(W.dtype) @ W
        if self.use_hidden_bias:
            theta = theta + self.param("hidden_bias", init, (m,), self.param_dtype)
        out = jnp.sum(log_cosh(theta), axis=-1)
        if self.use_visible_bias:
            out = out + s.astype(W.dtype) @ self.param("visible_bias", init, (n,), self.param_dtype)
        return out
