r"""Time-dependent variational principle: the parameter velocity :math:`\dot\theta`.

distnqs parameters are real (complex ones are held as real pairs,
:mod:`distnqs.models.base`), so the TDVP is used in its real-parameter
(McLachlan) form. With :math:`O_k = \partial_{\theta_k}\log\psi`,
:math:`\Delta O_k = O_k - \langle O_k\rangle`,
:math:`S_{kl} = \langle \Delta O_k^* \Delta O_l\rangle` and
:math:`F_k = \langle \Delta O_k^* (E_\mathrm{loc} - \langle E\rangle)\rangle`,
minimizing :math:`\| \sum_k \dot\theta_k \Delta O_k\psi + i (H - E)\psi \|`
over real :math:`\dot\theta` gives

.. math::  \mathrm{Re}\,S\;\dot\theta = \mathrm{Im}\,F
           \qquad\text{(real time, } i\partial_t\psi = H\psi\text{)},

.. math::  \mathrm{Re}\,S\;\dot\theta = -\mathrm{Re}\,F
           \qquad\text{(imaginary time, } \partial_\tau\psi = -(H - E)\psi\text{)}.

For a holomorphic network with complex parameters :math:`w = u + iv` this is
exactly the complex TDVP :math:`S\dot w = -iF` (the real view doubles the
parameters, :math:`O_v = i O_u`). Real time needs a complex
:math:`\log\psi` (complex parameters, or a network with a phase output): with
a real :math:`\log\psi` and a real Hamiltonian :math:`\mathrm{Im}\,F = 0` and
nothing moves, so :func:`distnqs.dynamics.evolve.evolve` refuses it.

Regularization of the solve:

- ``diag_shift``: :math:`(\mathrm{Re}\,S + \epsilon 1)\dot\theta = f`, dense
  Cholesky or the rank-shared conjugate gradient of :mod:`distnqs.optim.cg`
  with the S-products of :mod:`distnqs.estimators.qgt`;
- ``snr`` (Schmitt & Heyl, PRL 125, 100503 (2020), as in NetKet's
  ``TDVPSchmitt``): in the eigenbasis :math:`S = V\Sigma V^T`,
  :math:`\rho = V^T f`, with the per-sample :math:`Q_{ik} = (V^T q_i)_k`
  (:math:`f = \langle q\rangle`) the signal-to-noise ratio
  :math:`\mathrm{SNR}_k = |\rho_k|\sqrt{N}/\sigma(Q_k)`, and
  :math:`\dot\theta = V\,\mathrm{diag}\big(\sigma_k^{-1} r_k\big)\rho`,
  :math:`r_k = [1 + (\epsilon_\mathrm{s}\sigma_\mathrm{max}/\sigma_k)^6]^{-1}
  [1 + (\epsilon_\mathrm{SNR}/\mathrm{SNR}_k)^6]^{-1}`, eigenvalues below
  ``rcond`` :math:`\sigma_\mathrm{max}` dropped.

The TDVP residual (relative error of the projected dynamics, 0 when the
variational manifold follows the exact evolution; Schmitt & Heyl's
:math:`r^2`) is

.. math::  r^2 = \frac{\dot\theta^T\,\mathrm{Re}S\,\dot\theta - 2\dot\theta^T f
           + \mathrm{Var}\,E}{\mathrm{Var}\,E} .

Averages are :math:`\langle x\rangle = \sum_i p_i x_i` over the samples of all
ranks, :math:`p_i = 1/N` for Monte Carlo samples and
:math:`|\psi(s_i)|^2/\sum_j|\psi(s_j)|^2` for full enumeration.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from distnqs import comm
from distnqs.estimators.jacobian import vjp_sum
from distnqs.estimators.qgt import centered_jacobian, mean_log_derivative, qgt_dense, qgt_matvec
from distnqs.optim.cg import conjugate_gradient, vdot_real_tree


@dataclass(frozen=True)
class TDVP:
    """How :math:`\\dot\\theta` is solved for (see the module docstring)."""

    imaginary: bool = False
    regularization: str = "diag_shift"  # or "snr"
    diag_shift: float = 1e-4
    solver: str = "dense"  # diag_shift: "dense" or "cg"
    cg_maxiter: int = 500
    cg_tol: float = 1e-10
    rcond: float = 1e-14
    rcond_smooth: float = 1e-8
    snr_cutoff: float = 4.0
    chunk_size: int | None = None

    def force(self, log_psi, params, samples, weights, delta_e):
        r""":math:`f = \mathrm{Im}F` (real time) or :math:`-\mathrm{Re}F` (imaginary time), as a pytree.

        With the vjp convention :math:`\mathrm{Re}\sum_i c_i O_{ik}`:
        :math:`\mathrm{Re}F` has :math:`c = p\,\Delta E^*`, :math:`\mathrm{Im}F` has :math:`c = i p\,\Delta E^*`.
        """
        c = weights * jnp.conj(delta_e)
        c = -c if self.imaginary else 1j * c
        return comm.sum(vjp_sum(log_psi, params, samples, c, self.chunk_size))

    def velocity(self, log_psi, params, samples, weights, e_loc, n_total):
        r"""``(theta_dot, info)`` for this rank's ``samples`` ``(n, N)``, their local energies and weights.

        ``info``: ``residual`` (:math:`r^2`), ``energy`` (:math:`\langle E\rangle`),
        ``variance``, ``iterations`` (CG; 0 otherwise), ``xSx`` (:math:`\dot\theta^T S\dot\theta`).
        ``n_total`` is the number of Monte Carlo samples (SNR; ``inf`` for full enumeration).
        """
        energy = comm.sum(jnp.sum(weights * e_loc))
        delta_e = e_loc - energy
        variance = comm.sum(jnp.sum(weights * jnp.abs(delta_e) ** 2))
        iterations = jnp.zeros((), jnp.int32)
        if self.regularization == "snr":
            x, xSx, f_dot_x = self._snr_solve(log_psi, params, samples, weights, delta_e, n_total)
            x_tree = x
        else:
            f = self.force(log_psi, params, samples, weights, delta_e)
            eps = self.diag_shift
            if self.solver == "dense":
                f_flat, unravel = ravel_pytree(f)
                S = qgt_dense(log_psi, params, samples, n_total, weights)
                A = S + eps * jnp.eye(S.shape[0], dtype=S.dtype)
                c, low = jax.scipy.linalg.cho_factor(A)
                x = jax.scipy.linalg.cho_solve((c, low), f_flat)
                xSx, f_dot_x, x_tree = x @ S @ x, f_flat @ x, unravel(x)
            else:
                mean_o = mean_log_derivative(log_psi, params, samples, n_total, self.chunk_size, weights)

                def matvec(v):
                    Sv = qgt_matvec(log_psi, params, samples, v, n_total, self.chunk_size, mean_o, weights)
                    return jax.tree_util.tree_map(lambda a, b: a + eps * b, Sv, v)

                x_tree, cg_info = conjugate_gradient(matvec, f, tol=self.cg_tol, maxiter=self.cg_maxiter)
                xSx = cg_info["xAx"] - eps * vdot_real_tree(x_tree, x_tree)
                f_dot_x = vdot_real_tree(f, x_tree)
                iterations = cg_info["iterations"]
        residual = (xSx - 2.0 * f_dot_x + variance) / jnp.where(variance > 0, variance, 1.0)
        info = {"residual": residual, "energy": energy, "variance": variance, "iterations": iterations, "xSx": xSx}
        return x_tree, info

    def _snr_solve(self, log_psi, params, samples, weights, delta_e, n_total):
        flat, unravel = ravel_pytree(params)
        jr, ji = centered_jacobian(log_psi, params, samples, n_total, weights)
        S = qgt_dense(log_psi, params, samples, n_total, weights, jacobian=(jr, ji))
        dr, di = jnp.real(delta_e)[:, None], jnp.imag(delta_e)[:, None]
        q = -(jr * dr + ji * di) if self.imaginary else jr * di - ji * dr  # per-sample force, (n, P)
        f = comm.sum(weights @ q)
        ev, V = jnp.linalg.eigh(S)
        rho = V.T @ f
        Q = q @ V
        sigma = jnp.sqrt(comm.sum(weights @ (Q - rho) ** 2))
        sigma = jnp.maximum(sigma, self.rcond)
        snr = jnp.where(sigma == 0, jnp.inf, jnp.abs(rho) * jnp.sqrt(n_total) / sigma)
        ratio = jnp.abs(ev / ev[-1])
        ev_inv = jnp.where(ratio > self.rcond, 1.0 / jnp.where(ratio > self.rcond, ev, 1.0), 0.0)
        reg = 1.0 / (1.0 + (self.rcond_smooth / jnp.maximum(ratio, 1e-300)) ** 6)
        if self.snr_cutoff > 0:
            reg = reg / (1.0 + (self.snr_cutoff / snr) ** 6)
        x = V @ (ev_inv * reg * rho)
        return unravel(x), x @ S @ x, f @ x
