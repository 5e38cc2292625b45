r"""Observables of a quench, as local values per sample.

- :math:`\sigma^x = \frac1N\sum_i \sigma^x_i`, local value
  :math:`\frac1N\sum_i \psi(s^{(i)})/\psi(s)` (:math:`s^{(i)}`: spin :math:`i` flipped);
- :math:`\sigma^z\sigma^z = \frac1{N_b}\sum_{\langle ij\rangle} s_i s_j` over the
  :math:`N_b` nearest-neighbour bonds of the lattice (diagonal).

Both live in :mod:`distnqs.operators.observables` (shared with the ground-state
observables of ``[observables]``); exact counterparts for the same conventions:
:mod:`distnqs.dynamics.exact`.
"""

from __future__ import annotations

from distnqs.operators.observables import sx_local, szsz_local

__all__ = ["sx_local", "szsz_local"]
