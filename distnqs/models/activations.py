r"""Activation functions used by the ansätze."""

import jax.numpy as jnp


def log_cosh(x):
    r""":math:`\log\cosh x` for real or complex ``x``, stable for large :math:`|\mathrm{Re}\,x|`.

    Uses :math:`\log\cosh x = y + \log(1 + e^{-2y}) - \log 2` with
    :math:`y = \pm x` chosen so that :math:`\mathrm{Re}\,y \ge 0` (:math:`\cosh` is even).
    """
    y = jnp.where(jnp.real(x) < 0, -x, x)
    return y + jnp.log1p(jnp.exp(-2 * y)) - jnp.log(2.0)
