r"""Feed-forward network: :math:`\log\psi(s) = \sum_j \log\cosh(\,W_L\,g(\cdots g(W_1 s + b_1)\cdots) + b_L)_j`.

Hidden layers of width :math:`\alpha N` with activation :math:`g` = log cosh
(the one-layer case is an RBM without visible bias).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from distnqs.models.activations import log_cosh


class FFNN(nn.Module):
    alpha: float = 1.0
    layers: int = 2
    param_dtype: Any = jnp.float64
    init_std: float = 0.01

    @nn.compact
    def __call__(self, s):
        width = max(1, int(round(self.alpha * s.shape[-1])))
        x = s.astype(self.param_dtype)
        for _ in range(self.layers):
            x = log_cosh(nn.Dense(width, param_dtype=self.param_dtype, kernel_init=nn.initializers.normal(self.init_std))(x))
        return jnp.sum(x, axis=-1)
