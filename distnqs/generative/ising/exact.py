"""Exact thermodynamics of the periodic ``L x L`` Ising model ``H = -sum_<ij> s_i s_j``.

Two independent routes (k_B = 1, spins +1/-1, row-major sites, ``N = L^2``):

- :func:`exact_enumeration`: brute-force sum over all ``2^N`` configurations
  (``N <= 20``, i.e. up to 4 x 4), giving also the exact joint distribution of
  energy and magnetization.
- :func:`exact_transfer_matrix`: row-to-row transfer matrix
  ``T[a, b] = exp(beta (h_a / 2 + v_ab + h_b / 2))`` on the ``2^L`` row states
  (``h_a = sum_c s_c s_{c+1}`` inside a row, ``v_ab = sum_c s^a_c s^b_c``
  between rows), ``Z = Tr T^L``. Energy and specific heat come from
  ``e = -(1/N) d ln Z / d beta`` and ``c = (beta^2 / N) d^2 ln Z / d beta^2``
  (automatic differentiation in float64); the magnetization distribution
  ``P(M)`` from the generating function ``Z(theta) = Tr (T D_theta)^L``,
  ``D_theta = diag(exp(i theta M_b))``, inverted by a discrete Fourier
  transform over ``M = -N, -N+2, ..., N``. Practical for ``L <= 8``.

Both return :class:`ExactResult` with ``E_per_site = <H>/N``,
``C_per_site = (<H^2> - <H>^2) / (N T^2)``, ``abs_m = <|M|>/N`` and
``m2 = <M^2>/N^2``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["ExactResult", "enumerate_configs", "exact_enumeration", "exact_transfer_matrix", "exact_observables"]

MAX_ENUMERATION_SITES = 20
MAX_TRANSFER_L = 8


@dataclass
class ExactResult:
    """Exact thermal averages at temperature ``T`` on the periodic ``L x L`` lattice.

    ``m_values``/``m_probs``: exact distribution of ``m = M/N``.
    ``e_values``/``e_probs``: exact distribution of ``e = H/N`` (enumeration only, else empty).
    """

    L: int
    T: float
    E_per_site: float
    C_per_site: float
    abs_m: float
    m2: float
    m_values: np.ndarray = field(repr=False)
    m_probs: np.ndarray = field(repr=False)
    e_values: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    e_probs: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    def as_dict(self) -> dict:
        return {"E_per_site": self.E_per_site, "C_per_site": self.C_per_site,
                "abs_m": self.abs_m, "m2": self.m2}


def enumerate_configs(L: int) -> np.ndarray:
    """All ``2^N`` configurations as ``(2^N, L, L)`` int8; site ``i`` of configuration ``k`` is ``1 - 2 * bit_i(k)``."""
    N = L * L
    if N > MAX_ENUMERATION_SITES:
        raise ValueError(f"exact enumeration is limited to N <= {MAX_ENUMERATION_SITES} sites, got {L}x{L}")
    k = np.arange(2**N, dtype=np.int64)
    bits = (k[:, None] >> np.arange(N, dtype=np.int64)[None, :]) & 1
    return (1 - 2 * bits).astype(np.int8).reshape(2**N, L, L)


def exact_enumeration(L: int, T: float) -> ExactResult:
    """Thermal averages by summing ``exp(-H/T)`` over all ``2^N`` configurations (``L >= 3``, ``N <= 20``)."""
    from distnqs.generative.ising.wolff import energy_per_site, magnetization

    configs = enumerate_configs(L)
    N = L * L
    e = energy_per_site(configs)  # H/N
    m = magnetization(configs)
    logw = -(e * N) / T
    w = np.exp(logw - logw.max())
    p = w / w.sum()
    E = float(p @ e)
    C = float((p @ (e * N) ** 2 - (E * N) ** 2) / (N * T**2))
    e_vals, e_inv = np.unique(np.round(e * N).astype(np.int64), return_inverse=True)
    m_vals, m_inv = np.unique(np.round(m * N).astype(np.int64), return_inverse=True)
    return ExactResult(L=L, T=float(T), E_per_site=E, C_per_site=C,
                       abs_m=float(p @ np.abs(m)), m2=float(p @ m**2),
                       m_values=m_vals / N, m_probs=np.bincount(m_inv, weights=p, minlength=len(m_vals)),
                       e_values=e_vals / N, e_probs=np.bincount(e_inv, weights=p, minlength=len(e_vals)))


def _row_tables(L: int):
    """Per row state ``a`` (bit ``c`` -> column ``c``): ``h_a``, ``v_ab`` and row magnetization ``M_a``."""
    a = np.arange(2**L, dtype=np.int64)
    sig = 1 - 2 * ((a[:, None] >> np.arange(L)[None, :]) & 1)
    h = (sig * np.roll(sig, -1, axis=1)).sum(axis=1)
    v = sig @ sig.T
    return h.astype(np.float64), v.astype(np.float64), sig.sum(axis=1).astype(np.float64)


def _log_z(beta, h, v, L):
    """``ln Tr T^L`` with ``T`` scaled by ``exp(-2 beta L)`` (its largest entry) to avoid overflow."""
    t = jnp.exp(beta * (0.5 * h[:, None] + v + 0.5 * h[None, :] - 2.0 * L))
    return 2.0 * beta * L * L + jnp.log(jnp.trace(jnp.linalg.matrix_power(t, L)))


def exact_transfer_matrix(L: int, T: float) -> ExactResult:
    """Exact averages from the row transfer matrix (``3 <= L <= 8``); see the module docstring for the equations."""
    if not 3 <= L <= MAX_TRANSFER_L:
        raise ValueError(f"transfer-matrix solution is implemented for 3 <= L <= {MAX_TRANSFER_L}, got {L}")
    N = L * L
    beta = 1.0 / T
    h, v, Mrow = _row_tables(L)
    hj, vj = jnp.asarray(h), jnp.asarray(v)
    d1 = jax.grad(_log_z)
    d2 = jax.grad(d1)
    b = jnp.asarray(beta, dtype=jnp.float64)
    E = -float(d1(b, hj, vj, L)) / N
    C = float(d2(b, hj, vj, L)) * beta**2 / N

    # magnetization distribution by Fourier inversion of Z(theta), theta_j = pi j / (N + 1);
    # M -> -M symmetry and M = N (mod 2) give Z(theta_{n-j}) = (-1)^N conj Z(theta_j),
    # so only j <= n/2 is computed (complex128 matrix powers in jax)
    t = np.exp(beta * (0.5 * h[:, None] + v + 0.5 * h[None, :] - 2.0 * L))
    n = N + 1
    theta = np.pi * np.arange(n) / n
    half = n // 2 + 1
    tt = t[None, :, :] * np.exp(1j * theta[:half, None, None] * Mrow[None, None, :])  # T D_theta
    z = np.empty(n, np.complex128)
    z[:half] = np.asarray(jnp.trace(jnp.linalg.matrix_power(jnp.asarray(tt), L), axis1=1, axis2=2))
    j = np.arange(half, n)
    z[j] = (-1) ** N * np.conj(z[n - j])
    zk = np.fft.fft(z * np.exp(1j * theta * N)).real / n  # Z_k for M = 2k - N
    zk = np.clip(zk, 0.0, None)
    p = zk / zk.sum()
    M = 2.0 * np.arange(n) - N
    return ExactResult(L=L, T=float(T), E_per_site=E, C_per_site=C,
                       abs_m=float(p @ np.abs(M)) / N, m2=float(p @ M**2) / N**2,
                       m_values=M / N, m_probs=p)


def exact_observables(L: int, T: float) -> ExactResult | None:
    """Exact averages by the cheapest available route, or ``None`` when ``L`` is too large for both."""
    if L * L <= 16:
        return exact_enumeration(L, T)
    if L <= MAX_TRANSFER_L:
        return exact_transfer_matrix(L, T)
    return None
