r"""Wave-function ansatz wrapper: any flax module ``spins (batch, N) -> log psi (batch,)``.

Parameters are handled in a *real view*: every complex leaf :math:`w = u + iv`
is stored as a :class:`ComplexPair` ``(u, v)`` of real arrays. Gradients,
S-matrix products, optimizers and checkpoints then only see real numbers, and
for real parameters :math:`\theta` the energy gradient is
:math:`\partial_\theta E = 2\,\mathrm{Re}\langle (E_\mathrm{loc}-\langle E\rangle)^* O_\theta\rangle`
with :math:`O_\theta = \partial_\theta \log\psi` whether or not the network
is holomorphic.

Fast updates (optional). A module may define ``fast_update()`` returning an
object with look-up tables for spin flips, as NetKet's C++ machines did
(``InitLookup`` / ``LogValDiff``):

- ``tables(rparams)``: whatever depends on the parameters only;
- ``init_lookup(tables, s)``: per-configuration table, ``(batch, ...)``;
- ``flip(tables, s, lookup, sites, mask) -> (dlog, lookup', reliable)``:
  :math:`\log\psi(s') - \log\psi(s)` for the move flipping ``sites[c, q]``
  where ``mask[c, q]``, the table of :math:`s'`, and a flag that is False
  when the result may have lost precision (the caller then uses forward passes);
- ``flip_log_ratios(tables, s, lookup, flips)``: the same for a fixed list of
  flip sets, ``(batch, K)`` (local energies of spin-flip Hamiltonians).

Metropolis samplers and local energies use it when present
(:class:`distnqs.models.rbm.RBMFastUpdate`) and a forward pass otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from distnqs.errors import ConfigError


class ComplexPair(NamedTuple):
    """Real and imaginary part of one complex parameter array."""

    re: Any
    im: Any


def to_real(params):
    """Replace each complex leaf by a :class:`ComplexPair` of real arrays."""
    return jax.tree_util.tree_map(lambda x: ComplexPair(x.real, x.imag) if jnp.iscomplexobj(x) else x, params)


def from_real(rparams):
    """Inverse of :func:`to_real`."""
    return jax.tree_util.tree_map(
        lambda x: x.re + 1j * x.im if isinstance(x, ComplexPair) else x,
        rparams,
        is_leaf=lambda x: isinstance(x, ComplexPair),
    )


def n_parameters(rparams) -> int:
    """Number of real parameters."""
    return int(sum(x.size for x in jax.tree_util.tree_leaves(rparams)))


@dataclass(frozen=True, eq=False)
class Ansatz:
    r"""A flax module seen as :math:`\log\psi_\theta(s)` with real parameters :math:`\theta`."""

    module: nn.Module
    n_sites: int

    def init(self, key):
        """Initial real-view parameters; fails clearly if the module rejects N sites."""
        dummy = jnp.ones((1, self.n_sites), dtype=jnp.float64)
        try:
            variables = self.module.init(key, dummy)
            out = self.module.apply(variables, dummy)
        except ConfigError:
            raise
        except Exception as exc:  # a shape error from inside the user's network
            raise ConfigError(f"ansatz {type(self.module).__name__} does not accept {self.n_sites} sites: {str(exc).splitlines()[0]}") from exc
        extra = set(variables) - {"params"}
        if extra:
            raise ConfigError(f"ansatz {type(self.module).__name__} has mutable collections {sorted(extra)}; only 'params' is supported")
        if out.shape != (1,):
            raise ConfigError(f"ansatz {type(self.module).__name__} must map (batch, N) to (batch,), got {out.shape}")
        return to_real(variables["params"])

    def shapes(self):
        """Shapes and dtypes of :meth:`init`'s parameters (``jax.ShapeDtypeStruct`` leaves), with
        the same checks, from an abstract trace: nothing is computed or compiled (an eager
        :meth:`init` compiles every operation of the network once). A module that needs concrete
        values while it initializes falls back to :meth:`init` itself."""
        key = jax.random.PRNGKey(0)
        try:
            return jax.eval_shape(self.init, key)
        except ConfigError as exc:
            if not isinstance(exc.__cause__, jax.errors.JAXTypeError):  # else: a tracer where a value was needed
                # the message alone: jax appends a traceback-filtering note to errors from inside eval_shape
                raise ConfigError(str(exc).splitlines()[0]) from exc.__cause__
        return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), self.init(key))

    def log_psi(self, rparams, s):
        r""":math:`\log\psi_\theta(s)` for spins ``s`` of shape ``(batch, N)``."""
        return self.module.apply({"params": from_real(rparams)}, s)

    @property
    def fast_update(self):
        """The module's look-up-table protocol (see the module docstring), or ``None``."""
        make = getattr(self.module, "fast_update", None)
        return make() if callable(make) else None

    @property
    def is_autoregressive(self) -> bool:
        return bool(getattr(self.module, "is_autoregressive", False))
