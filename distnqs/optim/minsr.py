r"""Minimum-step stochastic reconfiguration (minSR), distributed over the ranks' samples.

Chen & Heyl, Nat. Phys. 20, 1476 (2024); Rende, Goldshmidt et al., Commun. Phys. 7, 260 (2024).
SR solves the :math:`P\times P` system :math:`(S+\lambda)\,x = g`; minSR solves the same problem
in sample space, an :math:`M\times M` system, cheaper when there are more parameters than samples.

Conventions (those of :mod:`distnqs.estimators.gradient` and :mod:`distnqs.estimators.qgt`):
parameters are real (complex ones are real pairs, :mod:`distnqs.models.base`),
:math:`O_{ik} = \partial_{\theta_k}\log\psi(s_i)` is complex when :math:`\log\psi` is, and over the
:math:`N` samples of all ranks

.. math::  \bar O = \frac{1}{\sqrt N}\begin{pmatrix}\mathrm{Re}\,\Delta O\\ \mathrm{Im}\,\Delta O\end{pmatrix},
           \qquad
           \bar\varepsilon = \frac{2}{\sqrt N}\begin{pmatrix}\mathrm{Re}\,(E_\mathrm{loc} - \bar E)\\
                                                          \mathrm{Im}\,(E_\mathrm{loc} - \bar E)\end{pmatrix},

with :math:`\Delta O = O - \langle O\rangle` (the :math:`M = 2N` rows of the real form; :math:`M = N`,
the real parts only, for a real :math:`\log\psi`), so that :math:`S = \bar O^T\bar O` (the
:math:`\mathrm{Re}\,\langle\Delta O^\dagger\Delta O\rangle` of :func:`~distnqs.estimators.qgt.qgt_dense`)
and :math:`g = \bar O^T\bar\varepsilon = 2\,\mathrm{Re}\,\langle (E_\mathrm{loc}-\bar E)^* O\rangle`.
minSR computes

.. math::  x = \bar O^T\,(T + \lambda\,1)^{-1}\,\bar\varepsilon, \qquad T = \bar O\,\bar O^T \quad (M\times M),

equal to :math:`(S+\lambda)^{-1} g` by the push-through identity
:math:`\bar O^T(\bar O\bar O^T+\lambda)^{-1} = (\bar O^T\bar O+\lambda)^{-1}\bar O^T` (for
:math:`\lambda > 0`; at :math:`\lambda = 0` it is the minimum-norm solution). For a holomorphic
network with complex parameters the real form is the real representation of the complex one
(:math:`T_c = \bar O_c\bar O_c^\dagger`, :math:`N\times N`), so both give the same update; with
``holomorphic=True`` (all parameters complex, :math:`\log\psi` holomorphic in them) the complex
form is used, :math:`\bar O_c = \Delta O_c/\sqrt N` with :math:`O_c = \partial_{\mathrm{Re}\,w}\log\psi`
(:math:`= \partial_w\log\psi`), :math:`\bar\varepsilon_c = 2(E_\mathrm{loc}-\bar E)/\sqrt N` and
:math:`x_c = \bar O_c^\dagger(T_c+\lambda)^{-1}\bar\varepsilon_c` (real view:
:math:`\mathrm{Re}\,x_c, \mathrm{Im}\,x_c`): half the rows, a quarter of the memory of :math:`T`.
:func:`check_holomorphic` tests the Cauchy-Riemann equations :math:`O_{\mathrm{Im}\,w} = i\,O_{\mathrm{Re}\,w}`.
With ``rcond > 0`` the inverse is a pseudo-inverse in the eigenbasis of :math:`T`, dropping the
eigenvalues :math:`\sigma_a \le \mathrm{rcond}\cdot\max_a\sigma_a`:
:math:`x = \bar O^T\sum_{\sigma_a > \mathrm{rcond}\,\sigma_\mathrm{max}} v_a v_a^T\bar\varepsilon/(\sigma_a+\lambda)`.

Distribution over :math:`R` ranks (no rank holds the Jacobian of all samples). Each rank forms
the rows of its :math:`n` samples (:math:`m = 2n` or :math:`n` rows, all :math:`P` columns), cuts
the parameter axis, padded with zero columns to :math:`R\lceil P/R\rceil`, into :math:`R` slices
and exchanges them with one all-to-all (:func:`distnqs.comm.alltoall`): rank :math:`r` then holds
the rows of *all* samples for its slice :math:`\bar O_{(r)}` (:math:`M\times\lceil P/R\rceil`), and

.. math::  T = \sum_r \bar O_{(r)}\bar O_{(r)}^T \;(\text{one allreduce}),\qquad
           x_{(r)} = \bar O_{(r)}^T y,\quad y = (T+\lambda)^{-1}\bar\varepsilon ,

with :math:`\bar\varepsilon` allgathered and :math:`x` assembled by an allgather of the slices.
Every rank solves the same :math:`M\times M` system (Cholesky). The value :math:`x^T S x =
\lVert\bar O x\rVert^2 = \lVert T y\rVert^2` (for the step-size guard) needs no further reduction.
One rank is the same code with :math:`R = 1`.

Memory per rank (8-byte reals, :math:`M = R\,m`): the local rows and the received slices,
:math:`m P + M\lceil P/R\rceil \approx 2mP`, i.e. :math:`2 M P / R`; :math:`T` and its factor,
:math:`2M^2`. Communication per step: :math:`mP` numbers in the all-to-all, an allreduce of
:math:`M^2`, allgathers of :math:`M` and :math:`P` numbers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from distnqs import comm
from distnqs.estimators.qgt import centered_jacobian
from distnqs.models.base import ComplexPair

_is_pair = lambda x: isinstance(x, ComplexPair)  # noqa: E731


def minsr_rows(log_psi, params, samples, e_loc, e_mean, n_total):
    r"""This rank's rows of :math:`\bar O` (``(m, P)``) and :math:`\bar\varepsilon` (``(m,)``), see the module docstring."""
    jr, ji = centered_jacobian(log_psi, params, samples, n_total)
    scale = 1.0 / jnp.sqrt(jnp.asarray(n_total, jnp.float64))
    de = e_loc - e_mean
    if jnp.iscomplexobj(jax.eval_shape(log_psi, params, samples[:1])):
        rows = jnp.concatenate([jr, ji], axis=0) * scale
        eps = jnp.concatenate([jnp.real(de), jnp.imag(de)]) * (2.0 * scale)
    else:  # real log psi: Im O = 0, and only Re(E_loc - E) enters g
        rows = jr * scale
        eps = jnp.real(de) * (2.0 * scale)
    return rows, eps.astype(rows.dtype)


def _real_parts(params):
    """``(re tree, merge)``: the real parts of every :class:`ComplexPair` leaf, and ``merge(u)``
    giving ``params`` with those real parts replaced by ``u``; ``ValueError`` if a leaf is real."""
    leaves = jax.tree_util.tree_leaves(params, is_leaf=_is_pair)
    if not leaves or not all(_is_pair(x) for x in leaves):
        raise ValueError("minsr_holomorphic needs complex parameters only (param_dtype = complex128)")
    re = jax.tree_util.tree_map(lambda x: x.re, params, is_leaf=_is_pair)
    return re, lambda u: jax.tree_util.tree_map(lambda x, r: ComplexPair(r, x.im), params, u, is_leaf=_is_pair)


def minsr_rows_holomorphic(log_psi, params, samples, e_loc, e_mean, n_total):
    r"""This rank's complex rows :math:`\bar O_c` (``(n, P/2)``) and :math:`\bar\varepsilon_c` (``(n,)``)."""
    re, merge = _real_parts(params)
    jr, ji = centered_jacobian(lambda u, s: log_psi(merge(u), s), re, samples, n_total)
    scale = 1.0 / jnp.sqrt(jnp.asarray(n_total, jnp.float64))
    return (jr + 1j * ji) * scale, (e_loc - e_mean).astype(jnp.complex128) * (2.0 * scale)


def check_holomorphic(log_psi, params, samples, rtol=1e-8):
    r"""True when :math:`\partial_{\mathrm{Im}\,w}\log\psi = i\,\partial_{\mathrm{Re}\,w}\log\psi` on ``samples``
    for every complex parameter (Cauchy-Riemann), i.e. the network is holomorphic there. One process, no collectives."""
    re, _ = _real_parts(params)
    im = jax.tree_util.tree_map(lambda x: x.im, params, is_leaf=_is_pair)
    flat_re, unravel = ravel_pytree(re)
    flat_im = ravel_pytree(im)[0]

    def f(u, v, s):
        p = jax.tree_util.tree_map(lambda a, b: ComplexPair(a, b), unravel(u), unravel(v))
        return log_psi(p, s[None])[0].astype(jnp.complex128)

    @jax.jit
    def mismatch(u, v, s):
        d_re = jax.vmap(jax.jacfwd(f, argnums=0), in_axes=(None, None, 0))(u, v, s)
        d_im = jax.vmap(jax.jacfwd(f, argnums=1), in_axes=(None, None, 0))(u, v, s)
        return jnp.max(jnp.abs(d_im - 1j * d_re)), jnp.max(jnp.abs(d_re))

    bad, size = mismatch(flat_re, flat_im, samples)
    return bool(bad <= rtol * max(float(size), 1e-300))


def parameter_slices(rows, n_ranks):
    r"""``(m, P)`` local rows -> ``(M, ceil(P/R))``: all ranks' rows of this rank's parameter slice.

    Block ``j`` of the padded parameter axis goes to rank ``j`` (:func:`distnqs.comm.alltoall`);
    the received rows are ordered by source rank, like :func:`distnqs.comm.allgather`.
    """
    m, p = rows.shape
    width = -(-p // n_ranks)
    padded = jnp.pad(rows, ((0, 0), (0, n_ranks * width - p)))
    blocks = padded.reshape(m, n_ranks, width).transpose(1, 0, 2)  # (R, m, width): block j for rank j
    return comm.alltoall(blocks).reshape(n_ranks * m, width)


def solve_sample_space(T, eps, diag_shift, rcond=0.0):
    r""":math:`y = (T+\lambda)^{-1}\bar\varepsilon` by Cholesky, or the cut eigen-decomposition when ``rcond > 0``."""
    if rcond > 0:  # T is real symmetric or complex Hermitian
        sigma, V = jnp.linalg.eigh(T)
        keep = sigma > rcond * jnp.max(sigma)
        inv = jnp.where(keep, 1.0 / jnp.where(keep, sigma + diag_shift, 1.0), 0.0)
        return V @ (inv * (V.conj().T @ eps))
    A = T + diag_shift * jnp.eye(T.shape[0], dtype=T.dtype)
    return jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(A), eps)


def minsr_solve(log_psi, params, samples, e_loc, e_mean, n_total, diag_shift, rcond=0.0, holomorphic=False):
    r"""``(x, xSx)``: :math:`x = \bar O^T(\bar O\bar O^T+\lambda)^{-1}\bar\varepsilon` as a pytree like
    ``params`` (identical on every rank) and :math:`x^T S x = \lVert T y\rVert^2`.

    ``samples`` (``(n, N)``) and ``e_loc`` (``(n,)``) are this rank's; ``e_mean`` the mean over all
    ranks, ``n_total`` the number of samples of all ranks. Inside jit; static shapes.
    ``holomorphic``: the complex form (module docstring), for complex parameters only.
    """
    n_ranks = comm.size()
    if holomorphic:
        re, _ = _real_parts(params)
        flat, unravel = ravel_pytree(re)
        rows, eps_local = minsr_rows_holomorphic(log_psi, params, samples, e_loc, e_mean, n_total)
    else:
        flat, unravel = ravel_pytree(params)
        rows, eps_local = minsr_rows(log_psi, params, samples, e_loc, e_mean, n_total)
    mine = parameter_slices(rows, n_ranks)  # (M, width)
    eps = comm.allgather(eps_local).reshape(-1)  # (M,), rows in the same order as `mine`
    T = comm.sum(mine @ mine.conj().T)
    y = solve_sample_space(T, eps, diag_shift, rcond)
    x = comm.allgather(mine.conj().T @ y).reshape(-1)[: flat.size]
    Ty = T @ y
    xSx = jnp.real(jnp.vdot(Ty, Ty))
    if holomorphic:
        return jax.tree_util.tree_map(ComplexPair, unravel(jnp.real(x)), unravel(jnp.imag(x))), xSx
    return unravel(x.astype(flat.dtype)), xSx
