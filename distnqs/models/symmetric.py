r"""Symmetric ansatze by projection onto a symmetry sector of the lattice.

Any (non-autoregressive) network :math:`\psi` becomes

.. math::  \psi_\mathrm{sym}(s) = \frac{1}{|G|}\sum_{g\in G} \chi_g^*\,\psi(g s),
           \qquad (g s)_i = s_{\pi_g(i)},

computed in log space, :math:`\log\psi_\mathrm{sym} = m + \log\sum_g \chi_g^* e^{\log\psi(gs) - m}
- \log|G|` with :math:`m = \max_g \mathrm{Re}\log\psi(gs)` (no overflow however large the
amplitudes). For a one-dimensional representation :math:`\chi` of :math:`G` this is an eigenstate
of every symmetry: :math:`\psi_\mathrm{sym}(h s) = \chi_h\,\psi_\mathrm{sym}(s)`.

Groups (``[ansatz] symmetries``), sites ``i = y Lx + x`` (DESIGN.md):

- ``"translations"`` (periodic lattices): :math:`T_a`, :math:`\pi(r) = r + a` mod L, all
  :math:`L_x L_y` shifts. ``sector = [nx, ny]`` (a chain: ``[n]``) is the momentum
  :math:`k = 2\pi(n_x/L_x, n_y/L_y)`, :math:`\chi(T_a) = e^{i k\cdot a}`: with
  :math:`(T_a s)_r = s_{r+a}` the state satisfies :math:`\psi(T_a s) = e^{ik\cdot a}\psi(s)`, i.e.
  it is an eigenstate of the operator that moves every spin by :math:`+a` with eigenvalue
  :math:`e^{ik\cdot a}`. Default ``[0, 0]``.
- ``"lattice"``: the point group times the translations (periodic), or the point group alone
  about the lattice's centre (open). Square :math:`L_x = L_y`: :math:`C_{4v}` (8 elements);
  rectangle: :math:`C_{2v}` (4); chain: the reflection (2). ``sector`` is a one-dimensional
  irrep of the point group at zero momentum, its character on a point operation :math:`M`
  (2 x 2 orthogonal, acting on ``(x, y)``): ``"A1"`` 1 (default); ``"A2"`` :math:`\det M`
  (odd under reflections); on the square also ``"B1"`` :math:`M_{00}^2 - M_{10}^2`
  (-1 under 90-degree rotations, +1 under the axis reflections, -1 under the diagonal ones)
  and ``"B2"`` = A2 x B1.

``spin_flip = "even" | "odd"`` (default ``"none"``) adds the global spin flip :math:`F s = -s`
(:math:`s_i = \pm 1`) with character :math:`p = +1` or :math:`-1`, alone or times the lattice group:
:math:`\psi_\mathrm{sym}(s) = \frac{1}{2|G|}\sum_g \chi_g^*\,[\psi(gs) + p\,\psi(-gs)]`,
so that :math:`\psi_\mathrm{sym}(-s) = p\,\psi_\mathrm{sym}(s)`. F commutes with every lattice
symmetry and with the TFIM coupling (not its field), the Heisenberg and J1-J2 models, and maps the
zero-magnetization sector onto itself. A singlet of N spins has :math:`p = (-1)^{N/2}` in the unrotated basis
(:math:`\prod_i\sigma^x_i = i^N e^{-i\pi S^x}`; e.g. -1 on 18 sites, +1 on 16) and :math:`p = +1`
with the Marshall sign (``sign_rule``: it rotates N/2 sites): a network initialized near a flip-even state and trained in an odd
ground state's momentum sector alone can stay in the even sector (``benchmarks/bench_symmetric.py``).

Cost: :math:`|G|` (with ``spin_flip``, :math:`2|G|`) forward passes per amplitude (the look-up tables of the RBM are not used: local
energies and Metropolis moves take the generic forward-pass path). The Marshall sign
(``sign_rule``) commutes with these groups when the sublattices map onto themselves or onto each
other with an even number of sites each (even :math:`L_x, L_y`, zero magnetization).
"""

from __future__ import annotations

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from distnqs.errors import ConfigError

KINDS = ("none", "translations", "lattice")
IRREPS = ("A1", "A2", "B1", "B2")


class Symmetrized(nn.Module):
    r""":math:`\log\psi_\mathrm{sym}(s) = \log\big(|G|^{-1}\sum_g w_g\,\psi(s_{\pi_g})\big)`,
    ``w_g`` = :math:`\chi_g^*` (``weights``), ``permutations[g]`` = :math:`\pi_g`."""

    base: nn.Module
    permutations: tuple  # (|G|, N) nested tuples of ints (static, hashable)
    weights: tuple  # (|G|,) of float (real characters) or complex
    flip: int = 0  # 0: no spin flip; +1 / -1: also the images -g s, weighted p w_g

    @nn.compact
    def __call__(self, s):
        perms = np.asarray(self.permutations, dtype=np.int32)
        w = np.asarray(self.weights)
        images = s[:, perms]  # (batch, |G|, N): (g s)_i = s_{pi_g(i)}
        if self.flip:
            images = jnp.concatenate([images, -images], axis=1)
            w = np.concatenate([w, self.flip * w])
        batch, n_group, n = images.shape
        z = self.base(images.reshape(batch * n_group, n)).reshape(batch, n_group)
        m = jax.lax.stop_gradient(jnp.max(jnp.real(z), axis=1, keepdims=True))
        real = not jnp.iscomplexobj(z) and not np.iscomplexobj(w) and bool(np.all(w >= 0))
        dtype = z.dtype if real else jnp.promote_types(z.dtype, jnp.complex64)
        total = jnp.sum(jnp.asarray(w, dtype) * jnp.exp((z - m).astype(dtype)), axis=1)
        return m[:, 0] + jnp.log(total) - np.log(n_group)


def _coordinates(lattice) -> np.ndarray:
    """``(N, 2)`` integer ``(x, y)`` of every site, ``i = y Lx + x``."""
    i = np.arange(lattice.n_sites)
    return np.stack([i % lattice.Lx, i // lattice.Lx], axis=1)


def _index(lattice, xy) -> np.ndarray:
    return xy[:, 1] * lattice.Lx + xy[:, 0]


def point_operations(lattice) -> list[np.ndarray]:
    """The point group's 2 x 2 integer matrices acting on ``(x, y)``: C4v (square), C2v
    (rectangle) or the reflection x -> -x (chain); the identity first."""
    if lattice.dim == 1:
        return [np.diag([1, 1]), np.diag([-1, 1])]
    c2v = [np.diag([1, 1]), np.diag([-1, -1]), np.diag([1, -1]), np.diag([-1, 1])]
    if lattice.Lx != lattice.Ly:
        return c2v
    swap = np.array([[0, 1], [1, 0]])
    return c2v + [swap @ m for m in c2v]  # rotations by +-90 degrees and the diagonal reflections


def point_character(matrix: np.ndarray, irrep: str) -> float:
    """Character of the one-dimensional irrep ``irrep`` on the point operation ``matrix`` (module docstring)."""
    det = float(round(np.linalg.det(matrix)))
    b = float(matrix[0, 0] ** 2 - matrix[1, 0] ** 2)
    return {"A1": 1.0, "A2": det, "B1": b, "B2": det * b}[irrep]


def _permutation(lattice, matrix: np.ndarray, shift) -> np.ndarray:
    r""":math:`\pi(r) = M (r - c) + c + a`, modulo L when periodic; ``c`` the centre of an open lattice."""
    xy = _coordinates(lattice)
    size = np.array([lattice.Lx, lattice.Ly])
    if lattice.dim == 1:
        size[1] = 1
    centre2 = np.zeros(2, dtype=int) if lattice.pbc else size - 1  # twice the centre: stays integer
    image2 = (2 * xy - centre2) @ matrix.T + centre2 + 2 * np.asarray(shift)
    assert np.all(image2 % 2 == 0), "a point operation must map sites onto sites"
    image = image2 // 2
    if lattice.pbc:
        image = image % size
    perm = _index(lattice, image)
    assert sorted(perm.tolist()) == list(range(lattice.n_sites)), "not a permutation of the sites"
    return perm


def symmetry_group(lattice, symmetries: str, sector=None) -> tuple[np.ndarray, np.ndarray]:
    r"""``(permutations (|G|, N), characters (|G|,))`` of ``symmetries`` in ``sector`` (module docstring).

    Raises :class:`ConfigError` (one line) for a group the lattice does not have or a sector the
    group does not have.
    """
    if symmetries not in KINDS or symmetries == "none":
        raise ConfigError(f"unknown [ansatz] symmetries {symmetries!r}; choose one of: {', '.join(KINDS)}")
    shape = [lattice.Lx] if lattice.dim == 1 else [lattice.Lx, lattice.Ly]
    if symmetries == "translations":
        if not lattice.pbc:
            raise ConfigError("[ansatz] symmetries = \"translations\" needs periodic boundaries (pbc = true); an open lattice has \"lattice\" (its point group)")
        momentum = [0] * len(shape) if sector is None else sector
        if not isinstance(momentum, (list, tuple)) or len(momentum) != len(shape) or not all(isinstance(n, int) and not isinstance(n, bool) for n in momentum):
            raise ConfigError(f"[ansatz] sector of symmetries = \"translations\" is the momentum, {len(shape)} integers (k = 2 pi n / L), got {sector!r}")
        shifts = list(itertools.product(*[range(L) for L in shape]))
        perms = np.stack([_permutation(lattice, np.eye(2, dtype=int), (a + (0,))[:2]) for a in shifts])
        k = 2 * np.pi * np.asarray(momentum, dtype=float) / np.asarray(shape, dtype=float)
        chars = np.exp(1j * np.asarray(shifts, dtype=float) @ k)
        chars.imag[np.abs(chars.imag) < 1e-12] = 0.0
        chars.real[np.abs(chars.real) < 1e-12] = 0.0
        return perms, (chars.real.copy() if np.all(chars.imag == 0) else chars)  # k = 0 or pi: real characters
    irrep = "A1" if sector is None else sector
    if not isinstance(irrep, str) or irrep not in IRREPS:
        raise ConfigError(f"[ansatz] sector of symmetries = \"lattice\" is an irrep of the point group (zero momentum): one of {', '.join(IRREPS)}, got {sector!r}")
    ops = point_operations(lattice)
    if irrep in ("B1", "B2") and len(ops) != 8:
        raise ConfigError(f"[ansatz] sector {irrep} needs a square lattice (C4v); this one has only A1 and A2")
    shifts = list(itertools.product(*[range(L) for L in shape])) if lattice.pbc else [(0,) * len(shape)]
    perms, chars = [], []
    for a in shifts:
        translation = _permutation(lattice, np.eye(2, dtype=int), (a + (0,))[:2])
        for m in ops:
            point = _permutation(lattice, m, (0, 0))
            perms.append(point[translation])  # s -> T_a(P s): (T (P s))_r = (P s)_{pi_T(r)} = s_{pi_P(pi_T(r))}
            chars.append(point_character(m, irrep))
    return np.stack(perms), np.asarray(chars)


FLIPS = {"none": 0, "even": 1, "odd": -1}


def symmetrize(module: nn.Module, lattice, symmetries: str, sector=None, spin_flip: str = "none") -> Symmetrized:
    r"""``module`` projected onto ``sector`` of ``symmetries`` and the ``spin_flip`` parity
    (:class:`Symmetrized`); any flax module ``(batch, N) -> log psi`` that is not autoregressive."""
    if any(callable(getattr(module, name, None)) for name in ("sample", "conditionals")):  # NAQS, netket ARNNs
        raise ConfigError("[ansatz] symmetries need a non-autoregressive ansatz: a sum over group images is not normalized for direct sampling")
    if spin_flip not in FLIPS:
        raise ConfigError(f"unknown [ansatz] spin_flip {spin_flip!r}; choose one of: {', '.join(FLIPS)}")
    if symmetries == "none":
        if sector is not None:
            raise ConfigError("[ansatz] sector needs symmetries = \"translations\" or \"lattice\"")
        perms, chars = np.arange(lattice.n_sites)[None, :], np.ones(1)
    else:
        perms, chars = symmetry_group(lattice, symmetries, sector)
    weights = np.conj(chars)
    weights = tuple(complex(w) for w in weights) if np.iscomplexobj(weights) else tuple(float(w) for w in weights)
    return Symmetrized(base=module, permutations=tuple(map(tuple, perms.tolist())), weights=weights, flip=FLIPS[spin_flip])


def group_size(lattice, symmetries: str, spin_flip: str = "none") -> int:
    """Number of images of ``symmetries`` (times the ``spin_flip``) on ``lattice`` (1 for ``"none"``):
    the factor on the cost of a forward pass."""
    flips = 1 if spin_flip in (None, "none") else 2
    if symmetries in (None, "none"):
        return flips
    translations = lattice.n_sites if lattice.pbc else 1
    return flips * (translations if symmetries == "translations" else translations * len(point_operations(lattice)))


__all__ = ["FLIPS", "IRREPS", "KINDS", "Symmetrized", "group_size", "point_character", "point_operations", "symmetrize", "symmetry_group"]
