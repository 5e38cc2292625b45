r"""Translation-invariant convolutional network on the ``Ly x Lx`` lattice.

.. math::  \log\psi(s) = \sum_{r,f} \big(g \circ C_L \circ \cdots \circ g \circ C_1\big)(s)_{r,f}

Each :math:`C_l` is a 2D (or 1D) convolution with ``kernel_size`` and
``features[l]`` channels; with periodic boundaries the padding wraps around
(circular), so :math:`\psi` is invariant under lattice translations; with open
boundaries it is zero padding. :math:`g` = log cosh. Sites are row-major (x
fastest): a configuration reshaped to ``(Ly, Lx)`` is the image.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from distnqs.models.activations import log_cosh


class CNN(nn.Module):
    shape: Sequence[int]  # (Ly, Lx); (1, L) for a chain
    pbc: bool = True
    features: Sequence[int] = (8, 8)
    kernel_size: int = 3
    param_dtype: Any = jnp.float64
    init_std: float = 0.05

    @nn.compact
    def __call__(self, s):
        Ly, Lx = self.shape
        batch = s.shape[0]
        one_d = Ly == 1
        x = s.astype(self.param_dtype).reshape(batch, Lx, 1) if one_d else s.astype(self.param_dtype).reshape(batch, Ly, Lx, 1)
        k = (self.kernel_size,) if one_d else (self.kernel_size, self.kernel_size)
        for f in self.features:
            x = nn.Conv(
                f,
                k,
                padding="CIRCULAR" if self.pbc else "SAME",
                param_dtype=self.param_dtype,
                kernel_init=nn.initializers.normal(self.init_std),
            )(x)
            x = log_cosh(x)
        return jnp.sum(x.reshape(batch, -1), axis=-1)
