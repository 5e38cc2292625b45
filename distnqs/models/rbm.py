r"""Restricted Boltzmann machine (Carleo & Troyer, Science 355, 602 (2017)).

.. math::  \log\psi(s) = \sum_i a_i s_i + \sum_{j=1}^{M} \log\cosh\Big(b_j + \sum_i W_{ij} s_i\Big),
           \quad M = \alpha N

(the hidden units summed out, up to the constant :math:`M\log 2`). Real or
complex parameters (``param_dtype``). Parameter names: ``visible_bias``
:math:`a` (N,), ``kernel`` :math:`W` (N, M), ``hidden_bias`` :math:`b` (M,).
The hidden-unit angles :math:`\theta_j = b_j + \sum_i W_{ij}s_i` are what the
fast samplers update after a flip (:class:`RBMFastUpdate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from distnqs.models.activations import log_cosh


class RBM(nn.Module):
    alpha: float = 1.0
    param_dtype: Any = jnp.float64
    use_visible_bias: bool = True
    use_hidden_bias: bool = True
    init_std: float = 0.01

    @nn.compact
    def __call__(self, s):
        n = s.shape[-1]
        m = max(1, int(round(self.alpha * n)))
        init = nn.initializers.normal(self.init_std)
        W = self.param("kernel", init, (n, m), self.param_dtype)
        theta = s.astype(W.dtype) @ W
        if self.use_hidden_bias:
            theta = theta + self.param("hidden_bias", init, (m,), self.param_dtype)
        out = jnp.sum(log_cosh(theta), axis=-1)
        if self.use_visible_bias:
            out = out + s.astype(W.dtype) @ self.param("visible_bias", init, (n,), self.param_dtype)
        return out

    def fast_update(self):
        """The look-up-table protocol of this RBM (see :mod:`distnqs.models.base`)."""
        return RBMFastUpdate()


class RBMTables(NamedTuple):
    r"""Per-parameter tables: :math:`a`, :math:`b`, :math:`W`, :math:`\cosh 2W`, :math:`\sinh 2W`."""

    visible_bias: Any  # (N,)
    hidden_bias: Any  # (M,)
    kernel: Any  # (N, M)
    cosh_2w: Any  # (N, M)
    sinh_2w: Any  # (N, M)


def _log_prod(f, block=8):
    r""":math:`\sum_j \log f_j` over the last axis as the log of products of ``block`` factors.

    Equal to ``sum(log(f))`` (for complex ``f`` up to multiples of :math:`2\pi i`)
    with one logarithm per ``block`` factors; a block overflows only if its
    factors' logs sum past ~700.
    """
    m = f.shape[-1]
    pad = (-m) % block
    if pad:
        f = jnp.concatenate([f, jnp.ones((*f.shape[:-1], pad), f.dtype)], axis=-1)
    p = jnp.prod(f.reshape(*f.shape[:-1], -1, block), axis=-1)
    return jnp.sum(jnp.log(p), axis=-1)


def _compose(cosh_d, sinh_d, cosh_e, sinh_e):
    r""":math:`(\cosh(d+e), \sinh(d+e))` from those of :math:`d` and :math:`e` (addition theorems)."""
    return cosh_d * cosh_e + sinh_d * sinh_e, sinh_d * cosh_e + cosh_d * sinh_e


def _tables(W, a, b) -> RBMTables:
    """:class:`RBMTables` of kernel ``W`` (N, M), visible bias ``a`` and hidden bias ``b`` (None: zero), in at least float64."""
    W = W.astype(jnp.promote_types(W.dtype, jnp.float64))
    n, m = W.shape
    a = jnp.zeros((n,), W.dtype) if a is None else a.astype(W.dtype)
    b = jnp.zeros((m,), W.dtype) if b is None else b.astype(W.dtype)
    return RBMTables(a, b, W, jnp.cosh(2.0 * W), jnp.sinh(2.0 * W))


def _abs1(x):
    r""":math:`|\mathrm{Re}\,x| + |\mathrm{Im}\,x|` (a cheap magnitude, within :math:`\sqrt2` of :math:`|x|`)."""
    return jnp.abs(jnp.real(x)) + jnp.abs(jnp.imag(x)) if jnp.iscomplexobj(x) else jnp.abs(x)


# The table formula loses about cond * 1e-16 relative precision in a factor
# cosh D - t sinh D with cond = (|cosh D| + |t sinh D|) / |cosh D - t sinh D|
# (large |theta| and |D| of the same sign); above this, log cosh is used exactly.
MAX_CONDITION = 1e3


@dataclass(frozen=True)
class RBMFastUpdate:
    r"""Log-amplitude ratios of an :class:`RBM` after spin flips, in :math:`O(M)` per move.

    The look-up table of a configuration :math:`s` is :math:`t_j = \tanh\theta_j`
    of the hidden-unit angles :math:`\theta_j = b_j + \sum_i W_{ij}s_i`.
    Flipping the sites :math:`F` changes :math:`\theta_j \to \theta_j - D_j`,
    :math:`D_j = 2\sum_{i\in F} W_{ij}s_i`, so (addition theorems of cosh and tanh)

    .. math::
        \log\frac{\psi(s')}{\psi(s)} = -2\sum_{i\in F}a_is_i + \sum_j \big[\log\cosh(\theta_j - D_j) - \log\cosh\theta_j\big]
        = -2\sum_{i\in F}a_is_i + \sum_j \log\big(\cosh D_j - t_j \sinh D_j\big),

    .. math::
        t'_j = \tanh(\theta_j - D_j) = \frac{t_j\cosh D_j - \sinh D_j}{\cosh D_j - t_j\sinh D_j},

    where :math:`\cosh D_j`, :math:`\sinh D_j` are built from the tables
    :math:`\cosh 2W_{ij}` and :math:`s_i\sinh 2W_{ij}` of the flipped sites by
    :math:`\cosh(d+e) = \cosh d\cosh e + \sinh d\sinh e`,
    :math:`\sinh(d+e) = \sinh d\cosh e + \cosh d\sinh e`. That needs only
    multiplications, one division per hidden unit (for :math:`t'`) and one
    logarithm per eight hidden units, against an :math:`O(NM)` forward pass of
    :math:`\log\psi(s')`. Where a factor is ill-conditioned (condition above
    ``MAX_CONDITION``, from large angles and weights of the same sign), local
    energies use the exact :math:`\log\cosh` difference of the angles for the
    whole chunk, and :meth:`flip` reports the move as unreliable (the sampler then
    redoes the sweep with forward passes). Parameters are the real view of
    :mod:`distnqs.models.base`.
    """

    def tables(self, rparams) -> RBMTables:
        """:class:`RBMTables` of the parameters (once per sampling call: :math:`O(NM)`)."""
        from distnqs.models.base import from_real

        p = from_real(rparams)
        return _tables(*self.dense(p))

    def dense(self, p):
        """``(W (N, M), a (N,) or None, b (M,) or None)`` of the RBM with parameters ``p`` (complex view)."""
        return p["kernel"], p.get("visible_bias"), p.get("hidden_bias")

    def init_lookup(self, tables: RBMTables, s):
        r""":math:`t = \tanh\theta`, :math:`\theta = b + sW`, shape ``(batch, M)``, for ``s`` ``(batch, N)``."""
        return jnp.tanh(self.angles(tables, s))

    def angles(self, tables: RBMTables, s):
        r""":math:`\theta = b + sW` ``(batch, M)``."""
        return s.astype(tables.kernel.dtype) @ tables.kernel + tables.hidden_bias

    @staticmethod
    def _ill_conditioned(t, cosh_d, sinh_d, f):
        """Whether any factor f = cosh D - t sinh D has a condition number above MAX_CONDITION."""
        if jnp.iscomplexobj(f):
            return jnp.any(_abs1(cosh_d) + _abs1(t * sinh_d) > MAX_CONDITION * _abs1(f))
        # real: |t| <= 1 and |sinh D| <= cosh D, so the condition is at most 2 cosh D / f
        return jnp.any(MAX_CONDITION * f < 2.0 * cosh_d)

    def _ratios(self, t, cosh_d, sinh_d, exact):
        """Sum over hidden units of log(cosh(theta - D)/cosh(theta)) from the tables,
        or from ``exact()`` = (theta, theta - D) where that is ill-conditioned."""
        f = cosh_d - t * sinh_d

        def from_angles(_):
            theta, new = exact()
            return jnp.sum(log_cosh(new) - log_cosh(theta), axis=-1)

        return jax.lax.cond(self._ill_conditioned(t, cosh_d, sinh_d, f), from_angles, lambda _: _log_prod(f), None)

    def flip(self, tables: RBMTables, s, lookup, sites, mask):
        r"""Ratio and new table after flipping ``sites[c, q]`` where ``mask[c, q]`` (one move per row).

        ``s`` ``(batch, N)`` are the configurations before the move, ``lookup``
        their tables; ``sites``, ``mask`` ``(batch, k)`` (distinct sites per row).
        Returns :math:`\log\psi(s') - \log\psi(s)` ``(batch,)`` (imaginary part
        modulo :math:`2\pi`), the table of :math:`s'`, and ``reliable``: False
        if a factor was ill-conditioned (``MAX_CONDITION``), in which case the
        caller recomputes with forward passes (the Metropolis sampler redoes the sweep).
        """
        rows = jnp.arange(s.shape[0])
        dtype = tables.kernel.dtype
        signs = [jnp.where(mask[:, q], s[rows, sites[:, q]], 0.0).astype(dtype) for q in range(sites.shape[1])]  # 0: not flipped
        cosh_d = sinh_d = None
        dlog = jnp.zeros(s.shape[0], dtype)
        for q, si in enumerate(signs):
            i = sites[:, q]
            c = jnp.where(mask[:, q, None], tables.cosh_2w[i], 1.0)
            sh = tables.sinh_2w[i] * si[:, None]
            cosh_d, sinh_d = (c, sh) if cosh_d is None else _compose(cosh_d, sinh_d, c, sh)
            dlog = dlog - 2.0 * tables.visible_bias[i] * si
        f = cosh_d - lookup * sinh_d
        reliable = ~self._ill_conditioned(lookup, cosh_d, sinh_d, f)
        return dlog + _log_prod(f), (cosh_d * lookup - sinh_d) / f, reliable

    def flip_log_ratios(self, tables: RBMTables, s, lookup, flips):
        r""":math:`\log\psi(s^{(F_k)}) - \log\psi(s)` for every flip set :math:`F_k`, shape ``(batch, K)``.

        ``flips`` is a static integer array ``(K, k)``: row :math:`k` lists the
        sites flipped together (TFIM: ``k = 1``, one row per site; exchange
        terms: ``k = 2``, one row per bond). Cost :math:`O(K\,k\,M)` per
        configuration instead of :math:`K` forward passes.
        """
        flips = np.asarray(flips)
        dtype = tables.kernel.dtype
        signs = [s[:, flips[:, q]].astype(dtype)[..., None] for q in range(flips.shape[1])]  # (batch, K, 1)
        cosh_d = sinh_d = None
        dlog = 0.0
        for q, si in enumerate(signs):
            i = flips[:, q]
            c, sh = tables.cosh_2w[i][None], tables.sinh_2w[i][None] * si  # (1, K, M), (batch, K, M)
            cosh_d, sinh_d = (c, sh) if cosh_d is None else _compose(cosh_d, sinh_d, c, sh)
            dlog = dlog - 2.0 * tables.visible_bias[i] * si[..., 0]

        def exact():
            theta = self.angles(tables, s)[:, None, :]
            return theta, theta - 2.0 * sum(tables.kernel[flips[:, q]][None] * si for q, si in enumerate(signs))

        return dlog + self._ratios(lookup[:, None, :], cosh_d, sinh_d, exact)


def _inverse_permutations(perms: np.ndarray) -> np.ndarray:
    """``inv[g, perms[g, i]] = i`` for each row ``g``."""
    inv = np.empty_like(perms)
    rows = np.arange(perms.shape[0])[:, None]
    inv[rows, perms] = np.arange(perms.shape[1])[None, :]
    return inv


def tied_rbm(symmetries: tuple, filters, hidden_bias, visible_bias):
    r"""The plain RBM equal to :class:`RBMSymm`: ``(W, a, b)`` with the tied kernel
    :math:`W_{j,(f,g)} = w_{f,\pi_g^{-1}(j)}` (N, alpha |G|), :math:`a_j = a` on every site and
    :math:`b_{(f,g)} = b_f`."""
    inv = _inverse_permutations(np.asarray(symmetries, dtype=np.int32))  # (|G|, N), static
    alpha, n = filters.shape
    W = jnp.transpose(filters[:, inv], (2, 0, 1)).reshape(n, alpha * inv.shape[0])
    return W, jnp.full((n,), visible_bias, filters.dtype), jnp.repeat(hidden_bias, inv.shape[0])


class RBMSymm(nn.Module):
    r"""RBM invariant by construction under a lattice group :math:`G` (``[ansatz] model = "rbm_symm"``,
    Carleo & Troyer 2017's symmetric RBM): :math:`\alpha` filters :math:`w_f` (N,), each applied to
    every image :math:`gs`, :math:`(gs)_i = s_{\pi_g(i)}`,

    .. math::  \log\psi(s) = a\sum_i s_i + \sum_{f=1}^{\alpha}\sum_{g\in G}\log\cosh\Big(b_f + \sum_i w_{f,i}\,s_{\pi_g(i)}\Big),

    so :math:`\psi(hs) = \psi(s)` for every :math:`h\in G` (the images of :math:`hs` are those of
    :math:`s`): zero momentum and the trivial irrep only. Parameters: ``filters`` (alpha, N),
    ``hidden_bias`` (alpha,), ``visible_bias`` (scalar); :math:`\alpha(N+1)+1` in all.

    It is the plain :class:`RBM` with :math:`M = \alpha|G|` hidden units and the tied kernel of
    :func:`tied_rbm`, so it keeps the RBM's look-up tables (:class:`RBMSymmFastUpdate`:
    :math:`O(\alpha|G|)` per Metropolis move and per Hamiltonian term), where a projected network
    (:mod:`distnqs.models.symmetric`) costs :math:`|G|` forward passes, :math:`O(|G|\,N M)`.
    ``netket.RBMSymm`` computes the same function but has no look-up tables, and its default
    initialization (standard deviation 0.1) starts a 6x6 lattice at alpha 16 with an energy variance
    near 1e5; here ``init_std`` (default 0.01) as for :class:`RBM`. ``symmetries`` holds the
    permutations :math:`\pi_g` (|G| rows; filled in from ``[ansatz] symmetries`` by
    :func:`distnqs.models.build_model`).
    """

    symmetries: tuple = ()
    alpha: int = 1
    param_dtype: Any = jnp.float64
    init_std: float = 0.01

    @nn.compact
    def __call__(self, s):
        n = s.shape[-1]
        if not self.symmetries or len(self.symmetries[0]) != n:
            raise ValueError(f"rbm_symm needs the group's permutations of the {n} sites ([ansatz] symmetries = \"translations\" or \"lattice\")")
        init = nn.initializers.normal(self.init_std)
        filters = self.param("filters", init, (int(self.alpha), n), self.param_dtype)
        b = self.param("hidden_bias", init, (int(self.alpha),), self.param_dtype)
        a = self.param("visible_bias", init, (), self.param_dtype)
        W, a_sites, b_units = tied_rbm(self.symmetries, filters, b, a)
        x = s.astype(W.dtype)
        return jnp.sum(log_cosh(x @ W + b_units), axis=-1) + x @ a_sites

    def fast_update(self):
        """The RBM's look-up tables on the tied kernel (:class:`RBMSymmFastUpdate`)."""
        return RBMSymmFastUpdate(self.symmetries)


@dataclass(frozen=True)
class RBMSymmFastUpdate(RBMFastUpdate):
    """:class:`RBMFastUpdate` of :class:`RBMSymm`: the tables of the equal plain RBM (:func:`tied_rbm`)."""

    symmetries: tuple = ()

    def dense(self, p):
        return tied_rbm(self.symmetries, p["filters"], p["hidden_bias"], p["visible_bias"])
