r"""Local values of the observables physicists plot (pure, jit-compatible, static shapes).

For a sample :math:`s` (spins :math:`s_i=\pm1`, :math:`\sigma^z` eigenvalues, shape ``(b, N)``)
and an operator :math:`O`, the local value is
:math:`O_\mathrm{loc}(s) = \sum_{s'} O_{ss'}\,\psi(s')/\psi(s)`; its average over
:math:`|\psi|^2` is :math:`\langle O\rangle`. Conventions (DESIGN.md: Pauli matrices):

- :func:`sx_local`: :math:`\sigma^x = \frac1N\sum_i \epsilon_i\sigma^x_i`, local value
  :math:`\frac1N\sum_i \epsilon_i\,\psi(s^{(i)})/\psi(s)` (:math:`s^{(i)}`: spin :math:`i`
  flipped; :math:`\epsilon_i = 1` unless a Marshall rotation is undone, below). Cost: N forward
  passes per sample.
- :func:`szsz_local`: :math:`\frac1{N_b}\sum_{\langle ij\rangle}s_is_j` over given bonds (diagonal).
- :func:`pair_matrix_zz`: :math:`M_{ij}(s) = s_i s_j`, the local values of
  :math:`\sigma^z_i\sigma^z_j` for every pair (diagonal, no forward pass).
- :func:`pair_matrix_exchange`: the local values of
  :math:`\vec\sigma_i\cdot\vec\sigma_j = \sigma^z_i\sigma^z_j + 2(\sigma^+_i\sigma^-_j + \sigma^-_i\sigma^+_j)`,

  .. math::  M_{ij}(s) = s_is_j + 2\,\epsilon_i\epsilon_j\,[s_i\ne s_j]\,\frac{\psi(s^{(ij)})}{\psi(s)}
             \quad(i\ne j),\qquad M_{ii} = 3,

  where :math:`s^{(ij)}` has spins :math:`i, j` exchanged. Cost: one forward pass per sample and
  per pair, :math:`N(N-1)/2` per sample (120 on 4x4, 4950 on 10x10), done for all pairs in one
  batch per chunk of samples (``chunk_size``: samples per chunk, so at most
  ``chunk_size * N(N-1)/2`` configurations are in memory at once).

**Marshall sign rule.** A Hamiltonian built with ``sign_rule = true`` is
:math:`H' = UHU^\dagger` with :math:`U = \prod_{i\in B}\sigma^z_i` (:math:`B`: the sublattice with
:math:`x+y` odd); NetKet writes it as the flip of the sign of every nearest-neighbour
:math:`\sigma^x\sigma^x+\sigma^y\sigma^y` term. The network then represents
:math:`\psi' = U\psi`, and the physical :math:`\langle\psi|O|\psi\rangle =
\langle\psi'|UOU^\dagger|\psi'\rangle`. Since :math:`U\sigma^{x,y}_iU^\dagger = \epsilon_i\sigma^{x,y}_i`
with :math:`\epsilon_i = (-1)^{x_i+y_i}`, the off-diagonal parts above carry :math:`\epsilon_i`
(``site_signs``); :math:`\sigma^z` is unchanged. Only a bipartite lattice has such a :math:`U`.

**Displacement classes** (:func:`displacement_classes`): the correlation at displacement
:math:`\mathbf r` is :math:`C(\mathbf r) = \frac1{|P_\mathbf r|}\sum_{(i,j)\in P_\mathbf r} M_{ij}`,
the average over the set :math:`P_\mathbf r` of all pairs :math:`(i, j)` with
:math:`\mathbf r_j - \mathbf r_i = \mathbf r`: with periodic boundaries every site has one partner
(translation average, :math:`|P_\mathbf r| = N`, displacements modulo :math:`L`); on an open lattice
only the pairs inside it (:math:`|P_\mathbf r| = (L_x-|r_x|)(L_y-|r_y|)`), so distant displacements
average few pairs. Since :math:`M` is symmetric, :math:`C(\mathbf r) = C(-\mathbf r)`, and only one of
each pair :math:`\pm\mathbf r` is listed (:math:`r_x \ge 0`, and :math:`r_y \ge 0` when :math:`r_x = 0`;
all :math:`N` translations with periodic boundaries). Distances are Euclidean, minimum image with
periodic boundaries.

**Structure factor** (:func:`k_grid`, :func:`structure_factor_phases`):
:math:`S(\mathbf k) = \frac1N\sum_{ij} e^{i\mathbf k\cdot(\mathbf r_i-\mathbf r_j)} M_{ij}` on the
grid :math:`k_\alpha = 2\pi n_\alpha/L_\alpha`, :math:`n_\alpha = 0..L_\alpha-1`, plus
:math:`(\pi,\pi)` (:math:`\pi` on a chain) as an extra last point; for :math:`M = s s^T` it is
:math:`\frac1N|\sum_i e^{i\mathbf k\cdot\mathbf r_i}s_i|^2` per sample.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from distnqs.operators.local_energy import chunked_map


def sx_local(log_psi, params, samples, log_psi_samples, chunk_size=None, site_signs=None):
    r""":math:`\frac1N\sum_i\epsilon_i\psi(s^{(i)})/\psi(s)` for each row of ``samples`` ``(n, N)``.

    ``site_signs``: :math:`\epsilon_i` (default all 1; see the module docstring).
    """
    n_sites = samples.shape[-1]
    flip = 1.0 - 2.0 * jnp.eye(n_sites, dtype=samples.dtype)
    eps = None if site_signs is None else jnp.asarray(site_signs, jnp.float64)

    def chunk(args):
        s, lp = args
        flipped = (s[:, None, :] * flip[None]).reshape(-1, n_sites)
        lp_f = log_psi(params, flipped).reshape(s.shape[0], n_sites)
        ratios = jnp.exp(lp_f - lp[:, None])
        if eps is not None:
            ratios = ratios * eps[None]
        return jnp.mean(ratios, axis=1)

    return chunked_map(chunk, (samples, log_psi_samples), chunk_size)


def szsz_local(samples, pairs):
    r""":math:`\frac1{N_b}\sum_{\langle ij\rangle} s_i s_j` for each row of ``samples``."""
    pairs = np.asarray(pairs, dtype=np.int32)
    return jnp.mean(samples[:, pairs[:, 0]] * samples[:, pairs[:, 1]], axis=1)


def pair_matrix_zz(samples):
    r""":math:`M_{ij}(s) = s_is_j`, shape ``(b, N, N)``."""
    return samples[:, :, None] * samples[:, None, :]


def all_pairs(n_sites: int) -> np.ndarray:
    """The ``N(N-1)/2`` pairs ``i < j``, shape ``(P, 2)``."""
    i, j = np.triu_indices(n_sites, k=1)
    return np.stack([i, j], axis=1).astype(np.int32)


def pair_matrix_exchange(log_psi, params, samples, log_psi_samples, chunk_size=None, site_signs=None):
    r"""Local values :math:`M_{ij}(s)` of :math:`\vec\sigma_i\cdot\vec\sigma_j`, shape ``(b, N, N)``.

    See the module docstring for the formula, the cost and ``site_signs``.
    Exchanged configurations are only used where :math:`s_i \ne s_j`; elsewhere
    the sample itself is evaluated (so a fixed-magnetization ansatz never sees a
    configuration outside its sector) and its term is zero.
    """
    n_sites = samples.shape[-1]
    pairs = all_pairs(n_sites)
    n_pairs = len(pairs)
    pi, pj = pairs[:, 0], pairs[:, 1]
    flip = np.ones((n_pairs, n_sites))
    flip[np.arange(n_pairs), pi] = -1.0
    flip[np.arange(n_pairs), pj] = -1.0
    flip = jnp.asarray(flip, samples.dtype)
    eps = np.ones(n_sites) if site_signs is None else np.asarray(site_signs, np.float64)
    coeff = jnp.asarray(2.0 * eps[pi] * eps[pj])

    def chunk(args):
        s, lp = args
        b = s.shape[0]
        anti = s[:, pi] != s[:, pj]  # (b, P)
        swapped = jnp.where(anti[..., None], s[:, None, :] * flip[None], s[:, None, :])
        lp_x = log_psi(params, swapped.reshape(b * n_pairs, n_sites)).reshape(b, n_pairs)
        flipflop = jnp.where(anti, jnp.exp(lp_x - lp[:, None]), 0.0) * coeff[None]
        upper = s[:, pi] * s[:, pj] + flipflop
        m = jnp.zeros((b, n_sites, n_sites), upper.dtype)
        m = m.at[:, pi, pj].set(upper).at[:, pj, pi].set(upper)
        return m + 3.0 * jnp.eye(n_sites, dtype=upper.dtype)[None]

    return chunked_map(chunk, (samples, log_psi_samples), chunk_size)


def coordinates(lattice) -> np.ndarray:
    """``(N, 2)`` integer coordinates ``(x, y)`` of the sites (row-major, x fastest)."""
    idx = np.arange(lattice.n_sites)
    return np.stack([idx % lattice.Lx, idx // lattice.Lx], axis=1)


def sublattice_signs(lattice) -> np.ndarray:
    r""":math:`\epsilon_i = (-1)^{x_i+y_i}` (+1 on sublattice A)."""
    xy = coordinates(lattice)
    return np.where((xy[:, 0] + xy[:, 1]) % 2 == 0, 1.0, -1.0)


def is_bipartite(lattice) -> bool:
    """Whether the checkerboard colouring is consistent with every nearest-neighbour bond."""
    eps = sublattice_signs(lattice)
    return all(eps[i] != eps[j] for i, j in lattice.nearest_neighbour_pairs())


def displacement_classes(lattice):
    r"""Tables of the correlation function's displacement classes (module docstring).

    Returns ``(displacements (D, 2) int, partner (D, N) int, weight (D, N) float,
    distance (D,) float)``: :math:`C(\mathbf r_d) = \sum_i w_{di} M_{i,\mathrm{partner}_{di}}`
    with :math:`w_{di} = 1/|P_{\mathbf r_d}|` for the sites having a partner, 0 otherwise.
    Sorted by distance (ties by displacement).
    """
    Lx, Ly, pbc = lattice.Lx, lattice.Ly, lattice.pbc
    xy = coordinates(lattice)
    if pbc:
        disp = [(dx, dy) for dy in range(Ly) for dx in range(Lx)]
    else:
        disp = [(dx, dy) for dy in range(-(Ly - 1), Ly) for dx in range(Lx) if dx > 0 or dy >= 0]
    partner = np.zeros((len(disp), lattice.n_sites), np.int32)
    weight = np.zeros((len(disp), lattice.n_sites))
    distance = np.zeros(len(disp))
    for d, (dx, dy) in enumerate(disp):
        x, y = xy[:, 0] + dx, xy[:, 1] + dy
        if pbc:
            x, y = x % Lx, y % Ly
            inside = np.ones(lattice.n_sites, bool)
            mx, my = min(dx, Lx - dx), min(dy, Ly - dy)
        else:
            inside = (x >= 0) & (x < Lx) & (y >= 0) & (y < Ly)
            mx, my = dx, dy
        partner[d] = np.where(inside, y * Lx + x, 0)
        weight[d] = inside / inside.sum()
        distance[d] = np.hypot(mx, my)
    order = sorted(range(len(disp)), key=lambda d: (round(distance[d], 12), disp[d][1], disp[d][0]))
    return np.asarray(disp, np.int64)[order], partner[order], weight[order], distance[order]


def correlations_from_matrix(m, partner, weight):
    r""":math:`C_d(s) = \sum_i w_{di} M_{i,\mathrm{partner}_{di}}(s)`: ``(b, N, N) -> (b, D)``."""
    rows = np.broadcast_to(np.arange(m.shape[-1]), partner.shape)
    return jnp.sum(m[:, rows, partner] * jnp.asarray(weight)[None], axis=-1)


def k_grid(lattice) -> np.ndarray:
    r"""Wave vectors :math:`(2\pi n_x/L_x, 2\pi n_y/L_y)` (``n_y = 0`` on a chain), then :math:`(\pi,\pi)`
    (``(pi, 0)`` on a chain) as the last row: shape ``(L_x L_y + 1, 2)``."""
    kx = 2 * np.pi * np.arange(lattice.Lx) / lattice.Lx
    ky = 2 * np.pi * np.arange(lattice.Ly) / lattice.Ly
    grid = np.stack(np.meshgrid(kx, ky, indexing="xy"), axis=-1).reshape(-1, 2)  # kx fastest
    pi_point = np.array([[np.pi, np.pi if lattice.dim == 2 else 0.0]])
    return np.concatenate([grid, pi_point], axis=0)


def structure_factor_phases(lattice, ks) -> np.ndarray:
    r""":math:`F_{ki} = e^{i\mathbf k\cdot\mathbf r_i}`, shape ``(K, N)`` complex."""
    return np.exp(1j * (np.asarray(ks) @ coordinates(lattice).T.astype(np.float64)))


def structure_factor_zz(samples, phases):
    r""":math:`\frac1N|\sum_i F_{ki}s_i|^2` per sample: ``(b, N) -> (b, K)`` (real)."""
    amp = samples.astype(jnp.float64) @ jnp.asarray(phases).T
    return jnp.abs(amp) ** 2 / samples.shape[-1]


def structure_factor_from_matrix(m, phases):
    r""":math:`\frac1N\sum_{ij}F_{ki}M_{ij}F^*_{kj}` per sample: ``(b, N, N) -> (b, K)``."""
    f = jnp.asarray(phases)
    fm = jnp.einsum("ki,bij->bkj", f, m)
    return jnp.einsum("bkj,kj->bk", fm, jnp.conj(f)) / m.shape[-1]


__all__ = [
    "sx_local", "szsz_local", "pair_matrix_zz", "pair_matrix_exchange", "all_pairs", "coordinates",
    "sublattice_signs", "is_bipartite", "displacement_classes", "correlations_from_matrix", "k_grid",
    "structure_factor_phases", "structure_factor_zz", "structure_factor_from_matrix",
]
