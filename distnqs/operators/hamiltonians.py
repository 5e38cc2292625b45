r"""Hamiltonian builders (Pauli matrices, J = 1 conventions of DESIGN.md).

- TFIM: :math:`H = -J \sum_{\langle ij\rangle} \sigma^z_i \sigma^z_j - G \sum_i \sigma^x_i`
- Heisenberg: :math:`H = J \sum_{\langle ij\rangle} \vec\sigma_i\cdot\vec\sigma_j`
- J1-J2: :math:`H = J_1 \sum_{\langle ij\rangle} \vec\sigma_i\cdot\vec\sigma_j
  + J_2 \sum_{\langle\langle ij\rangle\rangle} \vec\sigma_i\cdot\vec\sigma_j`

All are NetKet jax operators. ``sign_rule=True`` applies the Marshall sign
rotation (flips the sign of the xx + yy terms on a bipartite lattice), which
maps the Heisenberg ground state to a positive wave function without changing
the spectrum.

Each builder records the operator's structure (:mod:`distnqs.operators.spin_flip`:
diagonal bonds and spin-flip terms) on the operator it returns, so that local
energies of ansätze with look-up tables skip the forward passes.
"""

from __future__ import annotations

import netket as nk
import numpy as np

from distnqs.errors import ConfigError
from distnqs.operators.lattice import Lattice
from distnqs.operators.spin_flip import SpinFlipTerms, attach


def as_jax_operator(op):
    """Return ``op`` as a NetKet ``DiscreteJaxOperator`` (converting if needed).

    The operator is also *set up* here, outside any jit: NetKet's
    ``LocalOperatorJax`` packs its internals lazily on the first
    ``get_conn_padded`` call, and doing that inside a trace would cache tracers.
    """
    if not isinstance(op, nk.operator.DiscreteJaxOperator):
        if not hasattr(op, "to_jax_operator"):
            raise ConfigError(f"{type(op).__name__} is not a NetKet discrete operator (no .to_jax_operator())")
        op = op.to_jax_operator()
    op.get_conn_padded(np.ones((1, op.hilbert.size)))
    return op


def spin_hilbert(n_sites: int, total_sz: float | None = None) -> nk.hilbert.Spin:
    """Spin-1/2 Hilbert space with local values +1/-1 (optionally fixed total Sz)."""
    if total_sz is not None and n_sites % 2 and float(total_sz) == 0.0:
        raise ConfigError("total_sz = 0 needs an even number of sites")
    return nk.hilbert.Spin(0.5, n_sites, total_sz=total_sz)


def tfim(lattice: Lattice, G: float, J: float = 1.0, hilbert=None):
    r""":math:`H = -J\sum_{\langle ij\rangle}\sigma^z_i\sigma^z_j - G\sum_i\sigma^x_i` (NetKet ``IsingJax``)."""
    hilbert = hilbert or spin_hilbert(lattice.n_sites)
    # NetKet's Ising is  H = -h sum sx + J_nk sum sz sz,  so J_nk = -J.
    graph = lattice.graph()
    op = as_jax_operator(nk.operator.IsingJax(hilbert, graph, h=float(G), J=-float(J)))
    n = lattice.n_sites
    pairs = np.asarray(graph.edges(), dtype=np.int64).reshape(-1, 2)
    terms = SpinFlipTerms(pairs, np.full(len(pairs), -float(J)), np.arange(n).reshape(n, 1), np.full(n, -float(G)), False)
    return attach(op, terms)


def _exchange_terms(graph, couplings, sign_rules) -> SpinFlipTerms:
    r""":math:`\sum_c J_c\sum_{\langle ij\rangle_c}[\sigma^z_i\sigma^z_j \pm 2\,(\text{swap of } s_i \ne s_j)]` per edge colour c."""
    pairs, zz, weights = [], [], []
    for color, (J, sign_rule) in enumerate(zip(couplings, sign_rules)):
        edges = np.asarray(graph.edges(filter_color=color), dtype=np.int64).reshape(-1, 2)
        pairs.append(edges)
        zz.append(np.full(len(edges), J))
        weights.append(np.full(len(edges), (-2.0 if sign_rule else 2.0) * J))
    pairs = np.concatenate(pairs)
    return SpinFlipTerms(pairs, np.concatenate(zz), pairs, np.concatenate(weights), True)


def heisenberg(lattice: Lattice, J: float = 1.0, sign_rule: bool = False, total_sz=None, hilbert=None):
    r""":math:`H = J\sum_{\langle ij\rangle}\vec\sigma_i\cdot\vec\sigma_j` (Pauli matrices)."""
    hilbert = hilbert or spin_hilbert(lattice.n_sites, total_sz)
    graph = lattice.graph()
    op = as_jax_operator(nk.operator.Heisenberg(hilbert, graph, J=float(J), sign_rule=bool(sign_rule)))
    return attach(op, _exchange_terms(graph, [float(J)], [bool(sign_rule)]))


def j1j2(lattice: Lattice, J2: float, J1: float = 1.0, sign_rule: bool = False, total_sz=None, hilbert=None):
    r""":math:`H = J_1\sum_{nn}\vec\sigma_i\cdot\vec\sigma_j + J_2\sum_{nnn}\vec\sigma_i\cdot\vec\sigma_j`.

    ``sign_rule`` applies the Marshall sign to the J1 bonds only (exact at J2 = 0).
    """
    hilbert = hilbert or spin_hilbert(lattice.n_sites, total_sz)
    graph = lattice.graph(max_neighbor_order=2)
    op = as_jax_operator(nk.operator.Heisenberg(hilbert, graph, J=[float(J1), float(J2)], sign_rule=[bool(sign_rule), False]))
    return attach(op, _exchange_terms(graph, [float(J1), float(J2)], [bool(sign_rule), False]))


_MODELS = {
    "tfim": ({"model", "J", "G"}, {"G"}),
    "heisenberg": ({"model", "J", "sign_rule", "total_sz"}, set()),
    "j1j2": ({"model", "J", "J1", "J2", "sign_rule", "total_sz"}, {"J2"}),
}


def build_hamiltonian(cfg: dict, lattice: Lattice):
    """Hamiltonian from the ``[hamiltonian]`` table (``model`` = tfim | heisenberg | j1j2)."""
    model = cfg.get("model")
    if model not in _MODELS:
        raise ConfigError(f"unknown hamiltonian model {model!r}; choose one of: {', '.join(_MODELS)}")
    allowed, required = _MODELS[model]
    unknown = set(cfg) - allowed
    if unknown:
        raise ConfigError(f"[hamiltonian] model {model} has no option {sorted(unknown)[0]!r} (options: {', '.join(sorted(allowed - {'model'}))})")
    missing = required - set(cfg)
    if missing:
        raise ConfigError(f"[hamiltonian] model {model} needs {sorted(missing)[0]}")
    total_sz = cfg.get("total_sz")
    if model == "tfim":
        return tfim(lattice, G=cfg["G"], J=cfg.get("J", 1.0))
    if model == "heisenberg":
        return heisenberg(lattice, J=cfg.get("J", 1.0), sign_rule=cfg.get("sign_rule", False), total_sz=total_sz)
    return j1j2(lattice, J2=cfg["J2"], J1=cfg.get("J1", cfg.get("J", 1.0)), sign_rule=cfg.get("sign_rule", False), total_sz=total_sz)
