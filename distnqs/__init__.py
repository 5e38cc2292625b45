"""distnqs: distributed variational Monte Carlo with neural quantum states.

Data flow of one optimization step (see DESIGN.md)::

    config -> problem (lattice + Hamiltonian) -> ansatz (flax: spins -> log psi)
           -> sampler (per rank) -> estimators (E_loc, stats, gradient, S.v) <- comm
           -> optimizer (SR + optax) -> driver (loop) -> io (HDF5 log/checkpoint)

float64 is the default (``JAX_ENABLE_X64`` is switched on at import unless
the user set it explicitly).
"""

from distnqs.launch import configure_process as _configure_process

_configure_process()

__version__ = "0.1.0"
