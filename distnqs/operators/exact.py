r"""Exact references for small systems (NetKet's Lanczos and full enumeration).

- :func:`ground_state_energy`: lowest eigenvalue of ``H`` (Lanczos, ``nk.exact.lanczos_ed``).
- :func:`ground_state`: lowest eigenvalue and its normalized eigenvector (on the operator's
  Hilbert space, in the order of ``hilbert.all_states()``).
- :func:`exact_expectation`: variational energy of an ansatz by summing over
  the whole (constrained) Hilbert space,
  :math:`\langle H\rangle = \sum_s |\psi(s)|^2 E_\mathrm{loc}(s) / \sum_s |\psi(s)|^2`.
"""

from __future__ import annotations

import jax.numpy as jnp
import netket as nk
import numpy as np

from distnqs.operators.local_energy import local_energy

MAX_EXACT_SITES = 20


def ground_state_energy(hamiltonian) -> float:
    """Exact ground-state energy (total, not per site) for ``N <= 20`` sites."""
    n = hamiltonian.hilbert.size
    if n > MAX_EXACT_SITES:
        raise ValueError(f"exact diagonalization is limited to {MAX_EXACT_SITES} sites, got {n}")
    return float(nk.exact.lanczos_ed(hamiltonian, k=1)[0])


def ground_state(hamiltonian) -> tuple[float, np.ndarray]:
    """``(E_0, v)``: exact ground-state energy and normalized vector (Lanczos, ``N <= 20``)."""
    n = hamiltonian.hilbert.size
    if n > MAX_EXACT_SITES:
        raise ValueError(f"exact diagonalization is limited to {MAX_EXACT_SITES} sites, got {n}")
    energies, vectors = nk.exact.lanczos_ed(hamiltonian, k=1, compute_eigenvectors=True)
    v = np.asarray(vectors)[:, 0]
    return float(energies[0]), v / np.linalg.norm(v)


def exact_expectation(log_psi, params, operator, chunk_size=4096) -> float:
    r""":math:`\langle\psi|O|\psi\rangle/\langle\psi|\psi\rangle` by full enumeration."""
    states = jnp.asarray(operator.hilbert.all_states(), dtype=jnp.float64)
    lp = log_psi(params, states)
    weights = jnp.exp(2 * (lp.real - jnp.max(lp.real)))
    o_loc = local_energy(log_psi, params, operator, states, lp, chunk_size=chunk_size)
    return float(np.real(jnp.sum(weights * o_loc) / jnp.sum(weights)))
