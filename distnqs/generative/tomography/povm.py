r"""Tetrahedral informationally complete POVM on qubits and on qubit chains.

Conventions (used by the whole :mod:`distnqs.generative.tomography` package):

- Pauli matrices :math:`\sigma = (\sigma^x, \sigma^y, \sigma^z)`; the
  computational basis index 0 is spin up (:math:`\sigma^z = +1`), index 1 is
  spin down.
- Sites are numbered :math:`0, \dots, N-1` from left to right. A state vector
  of :math:`N` qubits reshaped to ``(2,) * N`` (C order) has site 0 on the
  first axis (the most significant bit of the flat index).
- A measurement outcome of the chain is :math:`a = (a_0, \dots, a_{N-1})`,
  :math:`a_i \in \{0, 1, 2, 3\}`; a probability table over all outcomes
  reshaped to ``(4,) * N`` has site 0 on the first axis.

Single-qubit POVM: :math:`M_a = \tfrac14 (1 + \vec s_a \cdot \vec\sigma)` with
the four unit vectors :math:`\vec s_a` of a regular tetrahedron
(:math:`\sum_a \vec s_a = 0`, :math:`\vec s_a \cdot \vec s_b = -1/3` for
:math:`a \ne b`). The vectors are read from the package data
``distnqs/data/literature.json`` (key ``tetrahedral_povm``), never typed in by hand.

Overlap matrix and dual frame:

.. math::
    T_{ab} = \mathrm{Tr}(M_a M_b), \qquad
    Q_a = \sum_b (T^{-1})_{ab} M_b, \qquad
    \rho = \sum_a p(a)\, Q_a \quad\text{with}\quad p(a) = \mathrm{Tr}(\rho M_a).

So :math:`\mathrm{Tr}(\rho O) = \sum_a p(a)\, \mathrm{Tr}(O Q_a)`: the number
:math:`o_a = \mathrm{Tr}(O Q_a)` evaluated on an outcome drawn from
:math:`p` is an unbiased estimator of :math:`\langle O \rangle`. On a chain the
product POVM :math:`M_{a_0} \otimes \dots \otimes M_{a_{N-1}}` has the product
dual frame, so a product operator :math:`\bigotimes_i O_i` acting on distinct
sites has the unbiased estimator :math:`\prod_i \mathrm{Tr}(O_i Q_{a_i})`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distnqs.errors import ConfigError

#: Pauli matrices in the basis (up, down): sigma^z = diag(+1, -1).
PAULI = {
    "I": np.eye(2, dtype=complex),
    "X": np.array([[0, 1], [1, 0]], dtype=complex),
    "Y": np.array([[0, -1j], [1j, 0]], dtype=complex),
    "Z": np.array([[1, 0], [0, -1]], dtype=complex),
}

_POVM_KEY = "tetrahedral_povm"


def load_tetrahedral_vectors(path: str | os.PathLike | None = None) -> np.ndarray:
    """The four Bloch vectors :math:`\\vec s_a` (shape ``(4, 3)``) from the
    ``tetrahedral_povm.s`` entry of the package's ``literature.json``, or of the
    JSON file ``path`` (the ``povm_file`` option). Raises ConfigError when the
    file or the key is missing or the vectors are not a 4 x 3 table."""
    if path is None:
        from distnqs.reference_data import literature

        path, data = "distnqs/data/literature.json", literature()
    else:
        path = Path(path)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise ConfigError(f"POVM file not found: {path} (data.povm_file)") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read POVM file {path}: {exc}") from None
    try:
        vectors = np.asarray(data[_POVM_KEY]["s"], dtype=float)
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{path} has no usable '{_POVM_KEY}.s' entry") from None
    if vectors.shape != (4, 3):
        raise ConfigError(f"{path}: '{_POVM_KEY}.s' must be 4 vectors of 3 numbers, got shape {vectors.shape}")
    return vectors


@dataclass(frozen=True)
class POVM:
    """A rank-one single-qubit POVM and its dual frame (all arrays numpy).

    Attributes:
        vectors: ``(K, 3)`` Bloch vectors :math:`\\vec s_a`.
        elements: ``(K, 2, 2)`` :math:`M_a = (1 + \\vec s_a\\cdot\\vec\\sigma)/K`.
        overlap: ``(K, K)`` :math:`T_{ab} = \\mathrm{Tr}(M_a M_b)`.
        overlap_inv: ``(K, K)`` :math:`T^{-1}`; note
            :math:`\\mathrm{Tr}(Q_a Q_b) = (T^{-1})_{ab}`.
        duals: ``(K, 2, 2)`` :math:`Q_a = \\sum_b (T^{-1})_{ab} M_b`.
        kraus: ``(K, 2)`` row vectors :math:`k_a` with
            :math:`M_a = k_a^\\dagger k_a`, i.e. :math:`k_a = \\sqrt{\\lambda_a}\\langle v_a|`
            for the single non-zero eigenpair of :math:`M_a`. The outcome
            probability of a pure state is :math:`p(a) = \\|(k_{a_0}\\otimes\\cdots)\\psi\\|^2`.
    """

    vectors: np.ndarray
    elements: np.ndarray
    overlap: np.ndarray
    overlap_inv: np.ndarray
    duals: np.ndarray
    kraus: np.ndarray

    @property
    def n_outcomes(self) -> int:
        return self.elements.shape[0]

    def estimator(self, operator: np.ndarray | str) -> np.ndarray:
        """Table :math:`o_a = \\mathrm{Tr}(O\\, Q_a)` (real part; ``O`` Hermitian),
        shape ``(K,)``. ``operator`` is a 2 x 2 matrix or a Pauli name 'I','X','Y','Z'."""
        op = PAULI[operator] if isinstance(operator, str) else np.asarray(operator, dtype=complex)
        return np.real(np.einsum("ij,aji->a", op, self.duals))


def povm_from_vectors(vectors: np.ndarray) -> POVM:
    """Build :math:`M_a = (1 + \\vec s_a\\cdot\\vec\\sigma)/K` for ``K`` unit
    vectors with :math:`\\sum_a \\vec s_a = 0` and its dual frame. Raises
    ValueError if the elements do not sum to the identity, are not rank one,
    or are not informationally complete (singular overlap matrix)."""
    vectors = np.asarray(vectors, dtype=float)
    k = vectors.shape[0]
    sigma = np.stack([PAULI["X"], PAULI["Y"], PAULI["Z"]])
    elements = (np.eye(2)[None] + np.einsum("ak,kij->aij", vectors, sigma)) / k
    if not np.allclose(elements.sum(axis=0), np.eye(2), atol=1e-10):
        raise ValueError("POVM elements do not sum to the identity")
    overlap = np.real(np.einsum("aij,bji->ab", elements, elements))
    if abs(np.linalg.det(overlap)) < 1e-12:
        raise ValueError("POVM is not informationally complete (singular overlap matrix)")
    overlap_inv = np.linalg.inv(overlap)
    duals = np.einsum("ab,bij->aij", overlap_inv, elements)
    kraus = np.empty((k, 2), dtype=complex)
    for a in range(k):
        values, vecs = np.linalg.eigh(elements[a])
        if values[0] > 1e-10:
            raise ValueError("POVM element is not rank one (Bloch vector not of unit length)")
        kraus[a] = np.sqrt(values[1]) * vecs[:, 1].conj()
    return POVM(vectors, elements, overlap, overlap_inv, duals, kraus)


def tetrahedral_povm(path: str | os.PathLike | None = None) -> POVM:
    """The tetrahedral IC-POVM with vectors from the reference file (see
    :func:`load_tetrahedral_vectors`)."""
    try:
        return povm_from_vectors(load_tetrahedral_vectors(path))
    except ValueError as exc:
        raise ConfigError(f"tetrahedral POVM vectors are unusable: {exc}") from None


def product_estimator(povm: POVM, outcomes: np.ndarray, operators: dict[int, np.ndarray | str]) -> np.ndarray:
    """Per-sample unbiased estimator of :math:`\\langle \\bigotimes_{i} O_i\\rangle`.

    ``outcomes``: integer array ``(M, N)``; ``operators``: ``{site: O_site}`` on
    distinct sites. Returns ``(M,)`` values :math:`\\prod_i \\mathrm{Tr}(O_i Q_{a_i})`;
    their mean over samples from :math:`p` is an unbiased estimate.
    """
    outcomes = np.asarray(outcomes)
    values = np.ones(outcomes.shape[0])
    for site, op in operators.items():
        values = values * povm.estimator(op)[outcomes[:, site]]
    return values
