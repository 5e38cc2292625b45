r"""Exact real- or imaginary-time evolution of small systems (reference curves).

:math:`|\psi(t)\rangle = e^{-iHt}|\psi_0\rangle` (or :math:`e^{-H\tau}` normalized)
with ``scipy.sparse.linalg.expm_multiply`` on NetKet's sparse Hamiltonian, and
the observables of :mod:`distnqs.dynamics.observables` at every time. The
initial vector is the variational state itself (:math:`\psi_0(s)\propto
e^{\log\psi_\theta(s)}` over all :math:`2^N` configurations), so the exact
curve starts from exactly the state t-VMC starts from.
"""

from __future__ import annotations

import numpy as np

MAX_EXACT_DYNAMICS_SITES = 16


def observables_sparse(hilbert, pairs):
    """Sparse matrices of :math:`\\sigma^x` (per site) and nearest-neighbour :math:`\\sigma^z\\sigma^z` (per bond)."""
    import netket as nk

    n = hilbert.size
    sx = sum(nk.operator.spin.sigmax(hilbert, i) for i in range(n)) * (1.0 / n)
    zz = sum(nk.operator.spin.sigmaz(hilbert, i) @ nk.operator.spin.sigmaz(hilbert, j) for i, j in pairs) * (1.0 / len(pairs))
    return sx.to_sparse(), zz.to_sparse()


def state_vector(log_psi, params, hilbert) -> np.ndarray:
    """Normalized :math:`\\psi_\\theta` on ``hilbert.all_states()`` (the order NetKet's sparse matrices use)."""
    states = np.asarray(hilbert.all_states(), dtype=np.float64)
    lp = np.asarray(log_psi(params, states))
    psi = np.exp(lp - lp.real.max()).astype(np.complex128)
    return psi / np.linalg.norm(psi)


def exact_evolution(hamiltonian, psi0: np.ndarray, pairs, times: np.ndarray, imaginary: bool = False) -> dict:
    """``{"t", "sx", "szsz", "energy", "energy_variance"}`` of the exact evolution at ``times`` (equally spaced from 0)."""
    from scipy.sparse.linalg import expm_multiply

    H = hamiltonian.to_sparse().astype(np.complex128)
    sx, zz = observables_sparse(hamiltonian.hilbert, pairs)
    times = np.asarray(times, dtype=np.float64)
    factor = -1.0 if imaginary else -1j
    psis = expm_multiply(factor * H, psi0, start=float(times[0]), stop=float(times[-1]), num=len(times), endpoint=True)
    out = {"t": times.tolist(), "sx": [], "szsz": [], "energy": [], "energy_variance": []}
    for psi in psis:
        psi = psi / np.linalg.norm(psi)
        hpsi = H @ psi
        e = float(np.real(np.vdot(psi, hpsi)))
        out["sx"].append(float(np.real(np.vdot(psi, sx @ psi))))
        out["szsz"].append(float(np.real(np.vdot(psi, zz @ psi))))
        out["energy"].append(e)
        out["energy_variance"].append(float(np.real(np.vdot(hpsi, hpsi)) - e**2))
    return out
