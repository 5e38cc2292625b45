"""NetKet-compatible operator layer: lattices, Hamiltonians, local energies.

Any NetKet ``DiscreteJaxOperator`` (``IsingJax``, ``PauliStringsJax``,
``LocalOperatorJax``, ...) is accepted as a Hamiltonian; other NetKet discrete
operators are converted with ``.to_jax_operator()``.
"""

from distnqs.operators.lattice import Lattice, build_lattice
from distnqs.operators.hamiltonians import (
    as_jax_operator,
    build_hamiltonian,
    heisenberg,
    j1j2,
    tfim,
)
from distnqs.operators.local_energy import local_energy, local_values
from distnqs.operators.exact import exact_expectation, ground_state, ground_state_energy

__all__ = [
    "Lattice",
    "build_lattice",
    "as_jax_operator",
    "build_hamiltonian",
    "heisenberg",
    "j1j2",
    "tfim",
    "local_energy",
    "local_values",
    "ground_state_energy",
    "ground_state",
    "exact_expectation",
]
