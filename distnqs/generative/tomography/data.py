r"""Measurement data: exact IC-POVM outcome samples of TFIM chain ground states.

Hamiltonian (open chain, Pauli matrices, conventions of :mod:`.povm`):

.. math::
    H(h) = -\sum_{i=0}^{N-2} \sigma^z_i \sigma^z_{i+1} - h \sum_{i=0}^{N-1} \sigma^x_i .

:math:`H` commutes with the spin flip :math:`P = \prod_i \sigma^x_i`. For every
:math:`h > 0` the finite-chain ground state is unique and even
(:math:`P = +1`); at :math:`h = 0` it is the even cat state
:math:`(|\uparrow\cdots\uparrow\rangle + |\downarrow\cdots\downarrow\rangle)/\sqrt2`.
Both solvers below work inside the even sector, so for small :math:`h` (where
the even and odd levels are split by only :math:`\sim h^N`) they return the
symmetric state and agree with each other, and :math:`\langle\sigma^z_i\rangle = 0`.

- :func:`ground_state_ed` (N <= 16): Lanczos (scipy ``eigsh``) on the
  :math:`2^{N-1}`-dimensional even sector, basis :math:`(|b\rangle + |\bar b\rangle)/\sqrt2`.
- :func:`ground_state_mps`: DMRG with physics-tenpy on the Hadamard-rotated
  chain :math:`-\sum\sigma^x\sigma^x - h\sum\sigma^z` (tenpy's ``TFIChain``,
  parity conserved, started in the even sector); the tensors are rotated back
  (:math:`\sigma^x \leftrightarrow \sigma^z`) and returned right-canonical in
  the (up, down) basis.

Samplers draw i.i.d. outcomes from :math:`p(a) = \langle\psi| M_{a_0}\otimes\cdots\otimes M_{a_{N-1}}|\psi\rangle`:
from the full table (small N), site by site from a state vector, or site by
site from a right-canonical MPS (cost linear in N).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from distnqs.generative.tomography import observables
from distnqs.generative.tomography.povm import POVM

MAX_ED_SITES = 16
#: Largest N for which the full 4^N outcome table is built.
MAX_TABLE_SITES = 11


# ----------------------------------------------------------------------------- exact diagonalization


def even_sector_hamiltonian(n_sites: int, h: float) -> tuple[sp.csr_matrix, np.ndarray]:
    r"""Sparse :math:`H(h)` in the even sector and the representatives.

    Basis state :math:`r` (integer, bit :math:`N-1-i` is site :math:`i`,
    bit 0 = up) stands for :math:`(|r\rangle + |\bar r\rangle)/\sqrt2` with
    :math:`\bar r` the all-spins flipped state; representatives have site 0 up
    (``r < 2^{N-1}``). :math:`\sigma^z_i\sigma^z_{i+1}` is diagonal,
    :math:`\sigma^x_i` maps a representative to the representative of
    :math:`r \oplus 2^{N-1-i}` with amplitude +1 (even sector).
    Returns ``(H, reps)``.
    """
    dim = 1 << (n_sites - 1)
    full = (1 << n_sites) - 1
    reps = np.arange(dim, dtype=np.int64)
    diag = np.zeros(dim)
    for i in range(n_sites - 1):
        bi = (reps >> (n_sites - 1 - i)) & 1
        bj = (reps >> (n_sites - 2 - i)) & 1
        diag -= 1.0 - 2.0 * (bi ^ bj)
    rows, cols, vals = [reps], [reps], [diag]
    for i in range(n_sites):
        flipped = reps ^ (1 << (n_sites - 1 - i))
        flipped = np.where(flipped >> (n_sites - 1) & 1, flipped ^ full, flipped)
        rows.append(reps)
        cols.append(flipped)
        vals.append(np.full(dim, -h))
    ham = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(dim, dim))
    return ham, reps


def ground_state_ed(n_sites: int, h: float) -> tuple[float, np.ndarray]:
    """Ground-state energy and normalized real state vector (length :math:`2^N`,
    site 0 most significant, index bit 0 = up) of :math:`H(h)`, from the even
    sector. Global sign fixed so that the largest component is positive."""
    if not 2 <= n_sites <= MAX_ED_SITES:
        raise ValueError(f"exact diagonalization needs 2 <= N <= {MAX_ED_SITES}, got {n_sites}")
    ham, reps = even_sector_hamiltonian(n_sites, h)
    if ham.shape[0] <= 256:
        values, vectors = np.linalg.eigh(ham.toarray())
        energy, coeffs = values[0], vectors[:, 0]
    else:
        v0 = np.ones(ham.shape[0]) / np.sqrt(ham.shape[0])
        values, vectors = spla.eigsh(ham, k=1, which="SA", v0=v0, tol=1e-13)
        energy, coeffs = values[0], vectors[:, 0]
    psi = np.zeros(1 << n_sites)
    psi[reps] = coeffs / np.sqrt(2.0)
    psi[reps ^ ((1 << n_sites) - 1)] = coeffs / np.sqrt(2.0)
    psi /= np.linalg.norm(psi)
    psi *= np.sign(psi[np.argmax(np.abs(psi))])
    return float(energy), psi


# ----------------------------------------------------------------------------- DMRG


def ground_state_mps(n_sites: int, h: float, bond_dim: int = 32, max_sweeps: int = 30, warm_start=None):
    r"""Ground state of :math:`H(h)` as a right-canonical MPS, by two-site DMRG (tenpy).

    Returns ``(energy, tensors, tenpy_state)``; ``tensors[i]`` has shape
    ``(chi_left, 2, chi_right)`` with physical index 0 = up, and
    :math:`\sum_s B_s B_s^\dagger = 1` for every site (right-canonical), so the
    state is :math:`\psi_{s_0\ldots s_{N-1}} = B^{s_0}_0 \cdots B^{s_{N-1}}_{N-1}`.
    ``warm_start`` (a ``tenpy_state`` of the same chain at a nearby field) is
    copied and used as the initial state; otherwise DMRG starts from the
    parity-even product state. Convergence: energy change < 1e-10 and
    entropy change < 1e-6 per sweep, truncation at ``bond_dim`` and singular values < 1e-12.
    """
    import logging

    from tenpy.algorithms import dmrg
    from tenpy.models.tf_ising import TFIChain
    from tenpy.networks.mps import MPS
    from tenpy.tools.optimization import temporary_level

    logging.getLogger("tenpy").setLevel(logging.WARNING)
    model = TFIChain({"L": n_sites, "J": 1.0, "g": float(h), "bc_MPS": "finite", "conserve": "parity"})
    sites = model.lat.mps_sites()
    if warm_start is not None:
        psi = warm_start.copy()
    else:
        psi = MPS.from_product_state(sites, ["up"] * n_sites, bc="finite", unit_cell_width=n_sites)  # parity even
    params = {
        "mixer": False,
        "diag_method": "lanczos",
        "max_E_err": 1e-10,
        "max_S_err": 1e-6,
        "min_sweeps": 2,
        "max_sweeps": max_sweeps,
        "trunc_params": {"chi_max": int(bond_dim), "svd_min": 1e-12},
    }
    with temporary_level(3):  # skip tenpy's per-array sanity checks
        info = dmrg.run(psi, model, params)
    hadamard = np.array([[1.0, 1.0], [1.0, -1.0]]) / np.sqrt(2.0)
    tensors = []
    for i in range(n_sites):
        b = psi.get_B(i, form="B").itranspose(["vL", "p", "vR"]).to_ndarray()
        labels = sites[i].state_labels
        b = b[:, [labels["up"], labels["down"]], :]  # physical index 0 = up (tenpy orders down, up)
        tensors.append(np.einsum("ts,lsr->ltr", hadamard, b).astype(complex))
    return float(info["E"]), tensors, psi


def mps_to_statevector(tensors: list[np.ndarray]) -> np.ndarray:
    """Contract an open MPS into a state vector of length :math:`2^N` (small N only)."""
    psi = tensors[0][0]  # (2, chi)
    for b in tensors[1:]:
        psi = np.einsum("pl,lsr->psr", psi, b).reshape(-1, b.shape[2])
    return psi[:, 0]


# ----------------------------------------------------------------------------- POVM distributions and sampling


def povm_amplitudes(psi: np.ndarray, povm: POVM, n_measured: int | None = None) -> np.ndarray:
    r"""Amplitudes :math:`A(a_{<K}, s_{\ge K}) = (k_{a_0}\otimes\cdots\otimes k_{a_{K-1}}\otimes 1)\psi`
    of the rank-one POVM applied to the first :math:`K` = ``n_measured`` sites
    (default all), shape ``(4,) * K + (2,) * (N - K)``. With :math:`K = N`,
    :math:`p(a) = |A(a)|^2`; in general :math:`p(a_{<K}) = \sum_s |A(a_{<K}, s)|^2`."""
    n_sites = int(np.log2(psi.size))
    n_measured = n_sites if n_measured is None else n_measured
    amp = psi.reshape((2,) * n_sites).astype(complex)
    for i in range(n_measured):
        amp = np.moveaxis(np.tensordot(povm.kraus, amp, axes=([1], [i])), 0, i)
    return amp


def povm_distribution(psi: np.ndarray, povm: POVM) -> np.ndarray:
    """Exact outcome distribution :math:`p(a) = \\langle\\psi|M_{a_0}\\otimes\\cdots|\\psi\\rangle`
    as a flat array of length :math:`4^N` (site 0 most significant)."""
    p = np.abs(povm_amplitudes(psi, povm)).ravel() ** 2
    return p / p.sum()


def sample_from_table(probabilities: np.ndarray, n_sites: int, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """I.i.d. outcomes ``(n_samples, n_sites)`` (uint8) from a flat table of
    :math:`4^{n}` probabilities (site 0 most significant) by inversion of the
    cumulative distribution."""
    if n_sites == 0:
        return np.zeros((n_samples, 0), dtype=np.uint8)
    cdf = np.cumsum(probabilities)
    flat = np.searchsorted(cdf, rng.random(n_samples) * cdf[-1], side="right")
    flat = np.minimum(flat, probabilities.size - 1)
    return np.stack(np.unravel_index(flat, (4,) * n_sites), axis=1).astype(np.uint8).reshape(n_samples, n_sites)


def _draw(weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One categorical draw per row of non-negative ``weights`` ``(B, K)``."""
    cdf = np.cumsum(weights, axis=1)
    u = rng.random(weights.shape[0]) * cdf[:, -1]
    return np.minimum((cdf < u[:, None]).sum(axis=1), weights.shape[1] - 1)


def sample_statevector(
    psi: np.ndarray, povm: POVM, n_samples: int, rng: np.random.Generator, table_sites: int | None = None, batch: int = 4096
) -> np.ndarray:
    r"""I.i.d. outcomes ``(n_samples, N)`` (uint8) from a state vector.

    The first :math:`K` = ``table_sites`` sites are drawn jointly from their
    exact marginal table :math:`p(a_0..a_{K-1}) = \|A(a_{<K}, \cdot)\|^2`,
    :math:`A = (k_{a_0}\otimes\cdots\otimes k_{a_{K-1}}\otimes 1)\psi`
    (:math:`4^K 2^{N-K}` numbers); the remaining sites one at a time from the
    conditional state :math:`\phi` (normalized :math:`A(a_{<i},\cdot)`):
    :math:`p(a_i|a_{<i}) = \|k_{a_i}\phi\|^2` contracting the first remaining
    site, then :math:`\phi \leftarrow k_{a_i}\phi` renormalized.
    ``K = N`` is plain table sampling; the default is ``N`` for
    ``N <= MAX_TABLE_SITES`` and ``N - 10`` above (per-sample cost :math:`O(2^{10})`).
    """
    n_sites = int(np.log2(psi.size))
    if table_sites is None:
        table_sites = n_sites if n_sites <= MAX_TABLE_SITES else n_sites - 10
    amp = povm_amplitudes(psi, povm, table_sites).reshape(4**table_sites, -1)
    marginal = np.sum(np.abs(amp) ** 2, axis=1)
    prefix = sample_from_table(marginal, table_sites, n_samples, rng)
    if table_sites == n_sites:
        return prefix
    amp = amp / np.sqrt(marginal)[:, None].clip(1e-300)
    flat = np.ravel_multi_index(prefix.T.astype(np.int64), (4,) * table_sites) if table_sites else np.zeros(n_samples, np.int64)
    out = np.empty((n_samples, n_sites), dtype=np.uint8)
    out[:, :table_sites] = prefix
    for start in range(0, n_samples, batch):
        b = min(batch, n_samples - start)
        phi = amp[flat[start:start + b]]
        for i in range(table_sites, n_sites):
            phi = phi.reshape(b, 2, -1)
            cand = np.stack([povm.kraus[a, 0] * phi[:, 0] + povm.kraus[a, 1] * phi[:, 1] for a in range(povm.n_outcomes)], axis=1)
            weights = np.sum(np.abs(cand) ** 2, axis=2)
            a = _draw(weights, rng)
            out[start:start + b, i] = a
            phi = cand[np.arange(b), a]
            phi = phi / np.linalg.norm(phi, axis=1, keepdims=True)
    return out


def sample_mps(tensors: list[np.ndarray], povm: POVM, n_samples: int, rng: np.random.Generator, batch: int = 4096) -> np.ndarray:
    r"""I.i.d. outcomes from a right-canonical MPS, site by site, cost :math:`O(N\chi^2)` per sample.

    Because the right environment of a right-canonical MPS is the identity,
    the conditional distribution of site :math:`i` given the left vector
    :math:`L` (the normalized product :math:`k_{a_0}B_0\cdots k_{a_{i-1}}B_{i-1}`)
    is :math:`p(a_i|a_{<i}) = \| L \sum_s k_{a_i}(s) B_i^s \|^2`, i.e. the
    Born weight of the site's reduced density matrix (given the outcomes on
    the left) projected with :math:`M_{a_i}`; then
    :math:`L \leftarrow L\sum_s k_{a_i}(s) B_i^s`, renormalized.
    Returns ``(n_samples, N)`` uint8.
    """
    n_sites = len(tensors)
    k = povm.n_outcomes
    # site maps (chi_l, K * chi_r): column block a is sum_s k_a(s) B^s
    maps = [np.einsum("as,lsr->lar", povm.kraus, t).reshape(t.shape[0], -1) for t in tensors]
    out = np.empty((n_samples, n_sites), dtype=np.uint8)
    for start in range(0, n_samples, batch):
        b = min(batch, n_samples - start)
        left = np.ones((b, 1), dtype=complex)
        for i, site_map in enumerate(maps):
            cand = (left @ site_map).reshape(b, k, -1)
            weights = np.sum(cand.real**2 + cand.imag**2, axis=2)
            a = _draw(weights, rng)
            out[start:start + b, i] = a
            left = cand[np.arange(b), a]
            left = left / np.linalg.norm(left, axis=1, keepdims=True)
    return out


# ----------------------------------------------------------------------------- data sets


@dataclass
class Dataset:
    """POVM outcome samples and exact observables for a family of fields.

    ``outcomes[f]`` (uint8, ``(n_samples, N)``) are i.i.d. samples of the
    ground state at ``fields[f]``; ``exact`` holds arrays with a leading field
    axis (see :func:`distnqs.generative.tomography.observables.exact_from_statevector`);
    ``states`` are the ED state vectors (``None`` for MPS data).
    """

    n_sites: int
    fields: np.ndarray
    outcomes: np.ndarray
    method: str
    povm_vectors: np.ndarray
    seed: int
    bond_dim: int = 0
    exact: dict[str, np.ndarray] = field(default_factory=dict)
    states: np.ndarray | None = None


def exact_ground_state(n_sites: int, h: float, method: str, bond_dim: int, warm_start=None) -> dict:
    """Ground state at field ``h`` with exact observables:
    ``{'energy', 'observables', 'state'}`` (ED) or ``{'energy', 'observables', 'tensors', 'tenpy_state'}`` (MPS)."""
    if method == "ed":
        energy, psi = ground_state_ed(n_sites, h)
        obs = observables.exact_from_statevector(psi)
        return {"energy": energy, "observables": obs, "state": psi}
    if method == "mps":
        energy, tensors, tenpy_state = ground_state_mps(n_sites, h, bond_dim, warm_start=warm_start)
        obs = observables.exact_from_mps(tensors)
        return {"energy": energy, "observables": obs, "tensors": tensors, "tenpy_state": tenpy_state}
    raise ValueError(f"unknown method {method!r}")


def generate_dataset(
    n_sites: int,
    fields: np.ndarray,
    n_samples: int,
    povm: POVM,
    seed: int,
    method: str = "ed",
    bond_dim: int = 32,
    progress: Callable[[str], None] | None = None,
) -> Dataset:
    """Ground states (ED or DMRG) at every field, their exact observables, and
    ``n_samples`` exact POVM outcome samples each. Sampling uses
    ``numpy.random.default_rng([seed, f])`` for field index ``f``. DMRG at
    each field starts from the previous field's MPS (list fields in order)."""
    fields = np.asarray(fields, dtype=float)
    outcomes = np.empty((fields.size, n_samples, n_sites), dtype=np.uint8)
    exact: dict[str, list] = {}
    states = []
    previous = None
    for f, h in enumerate(fields):
        t0 = time.perf_counter()
        gs = exact_ground_state(n_sites, h, method, bond_dim, warm_start=previous)
        previous = gs.get("tenpy_state")
        rng = np.random.default_rng([seed, f])
        if method == "ed":
            states.append(gs["state"])
            outcomes[f] = sample_statevector(gs["state"], povm, n_samples, rng)
        else:
            outcomes[f] = sample_mps(gs["tensors"], povm, n_samples, rng)
        exact.setdefault("energy", []).append(gs["energy"])
        for key, value in gs["observables"].items():
            exact.setdefault(key, []).append(value)
        if progress is not None:
            progress(f"data {f + 1}/{fields.size}: h = {h:.3f}, E = {gs['energy']:.8f}, "
                     f"{n_samples} samples ({method}, {time.perf_counter() - t0:.1f} s)")
    return Dataset(
        n_sites=n_sites,
        fields=fields,
        outcomes=outcomes,
        method=method,
        povm_vectors=np.asarray(povm.vectors),
        seed=seed,
        bond_dim=bond_dim if method == "mps" else 0,
        exact={k: np.asarray(v) for k, v in exact.items()},
        states=np.asarray(states) if states else None,
    )


def save_dataset(path: str | Path, data: Dataset) -> None:
    """Write a :class:`Dataset` to HDF5: datasets ``fields``, ``outcomes``
    (gzip), ``povm_vectors``, ``exact/<name>``, optional ``states``; scalars as attributes."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs.update({"n_sites": data.n_sites, "method": data.method, "seed": data.seed, "bond_dim": data.bond_dim})
        f.attrs["hamiltonian"] = "H = -sum_i sz_i sz_{i+1} - h sum_i sx_i (open chain, Pauli); even (spin-flip symmetric) ground state"
        f.attrs["outcome_convention"] = "outcomes[f, m, i] = a_i in 0..3 at site i for M_a = (1 + s_a.sigma)/4"
        f.create_dataset("fields", data=data.fields)
        f.create_dataset("outcomes", data=data.outcomes, compression="gzip", compression_opts=4, chunks=True)
        f.create_dataset("povm_vectors", data=data.povm_vectors)
        group = f.create_group("exact")
        for key, value in data.exact.items():
            group.create_dataset(key, data=value)
        if data.states is not None:
            f.create_dataset("states", data=data.states)
    tmp.replace(path)


def load_dataset(path: str | Path) -> Dataset:
    """Read a :class:`Dataset` written by :func:`save_dataset`."""
    with h5py.File(path, "r") as f:
        return Dataset(
            n_sites=int(f.attrs["n_sites"]),
            fields=f["fields"][()],
            outcomes=f["outcomes"][()],
            method=str(f.attrs["method"]),
            povm_vectors=f["povm_vectors"][()],
            seed=int(f.attrs["seed"]),
            bond_dim=int(f.attrs["bond_dim"]),
            exact={k: v[()] for k, v in f["exact"].items()},
            states=f["states"][()] if "states" in f else None,
        )
