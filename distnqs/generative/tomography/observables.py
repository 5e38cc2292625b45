r"""Observables of the TFIM chain: exact values and estimates from POVM samples.

Conventions as in :mod:`.povm` (Pauli matrices, index 0 = up, sites 0..N-1).
All functions return plain numpy arrays. Keys of the observable dictionaries:

- ``sx[n]``   :math:`\langle\sigma^x_n\rangle`, :math:`n = 0..N-1`.
- ``szsz[n]`` :math:`\langle\sigma^z_0\sigma^z_n\rangle` (``szsz[0] = 1``).
- ``sxsx[n]`` :math:`\langle\sigma^x_0\sigma^x_n\rangle` (``sxsx[0] = 1``).
- ``mu_x``    :math:`\mu_x = \langle \sum_i\sigma^x_i\rangle / N` (transverse magnetization).
- ``mu_z``    :math:`\mu_z = \langle (\sum_i\sigma^z_i)^2\rangle^{1/2} / N` (order parameter).
- ``renyi2[l-1]`` :math:`S_2 = -\ln\mathrm{Tr}\rho_A^2` of the left block
  :math:`A = \{0..l-1\}`, :math:`l = 1..N-1` (exact values only).

Why :math:`\mu_z` is the root mean square and not :math:`\langle|\sum_i\sigma^z_i|\rangle/N`:
the finite chain's ground state is spin-flip symmetric, so
:math:`\langle\sum_i\sigma^z_i\rangle = 0` for every :math:`h` and an order
parameter must be even in :math:`\sigma^z`. :math:`\langle(\sum_i\sigma^z_i)^2\rangle
= N + \sum_{i\ne j}\langle\sigma^z_i\sigma^z_j\rangle` is a sum of two-site
correlators, each with an unbiased product estimator from POVM samples
(:math:`\hat z_i\hat z_j`, :math:`i \ne j`, :math:`\hat z = \mathrm{Tr}(\sigma^z Q_a)`).
:math:`|\sum_i\sigma^z_i|` is not a polynomial in the Pauli operators; the
naive estimator :math:`|\sum_i\hat z_i|` is biased upward by the large
single-sample variance of :math:`\hat z_i` (:math:`\hat z\in\{3,-1\}`), so it
cannot be compared with the exact value. :math:`\mu_z \to 1` deep in the
ferromagnet and :math:`\to O(N^{-1/2})` in the paramagnet.
"""

from __future__ import annotations

import numpy as np

from distnqs.generative.tomography.povm import PAULI, POVM

OBSERVABLE_KEYS = ("sx", "szsz", "sxsx", "mu_x", "mu_z")

# ----------------------------------------------------------------------------- exact: state vectors


def exact_from_statevector(psi: np.ndarray) -> dict[str, np.ndarray]:
    """Exact observables (see module docstring) of a normalized state vector
    of length :math:`2^N` (site 0 most significant, bit 0 = up)."""
    n = int(np.log2(psi.size))
    t = psi.reshape((2,) * n)
    prob = np.abs(t) ** 2
    z = np.array([1.0, -1.0])

    def expect_flip(axes):
        return float(np.real(np.vdot(t, np.flip(t, axis=axes))))

    sx = np.array([expect_flip((i,)) for i in range(n)])
    sxsx = np.array([1.0] + [expect_flip((0, j)) for j in range(1, n)])
    szsz = np.empty(n)
    for j in range(n):
        axes = tuple(k for k in range(n) if k not in (0, j))
        marg = prob.sum(axis=axes)
        szsz[j] = 1.0 if j == 0 else float(np.einsum("ab,a,b->", marg, z, z))
    mz = np.zeros((2,) * n)
    for i in range(n):
        shape = [1] * n
        shape[i] = 2
        mz = mz + z.reshape(shape)
    mz2 = float(np.sum(prob * mz**2))
    renyi2 = np.empty(n - 1)
    for block in range(1, n):
        s = np.linalg.svd(psi.reshape(2**block, -1), compute_uv=False)
        renyi2[block - 1] = -np.log(np.sum(s**4))
    return {"sx": sx, "szsz": szsz, "sxsx": sxsx, "mu_x": sx.mean(), "mu_z": np.sqrt(mz2) / n, "renyi2": renyi2}


# ----------------------------------------------------------------------------- exact: MPS


def _transfer(left: np.ndarray, tensor: np.ndarray, op: np.ndarray | None = None) -> np.ndarray:
    r""":math:`L'_{r q} = \sum \overline{B^{s}_{l r}}\, L_{l m}\, O_{s t}\, B^{t}_{m q}`
    (left environment, bra index first; ``op=None`` is the identity)."""
    ket = tensor if op is None else np.einsum("st,mtq->msq", op, tensor)
    tmp = np.tensordot(left, ket, axes=([1], [0]))  # (l, s, q)
    return np.tensordot(tensor.conj(), tmp, axes=([0, 1], [0, 1]))


def exact_from_mps(tensors: list[np.ndarray]) -> dict[str, np.ndarray]:
    r"""Exact observables (module docstring) of a normalized right-canonical MPS
    (tensors ``(chi_l, 2, chi_r)``, index 0 = up); cost :math:`O(N\chi^3)`.

    The right environment of a right-canonical MPS is the identity, so an
    expectation value is the trace of the left environment right after the
    last operator. :math:`\langle(\sum_i\sigma^z_i)^2\rangle` uses the moment
    recursion :math:`E_2' = T_1(E_2) + 2T_z(E_1) + T_1(E_0)`,
    :math:`E_1' = T_1(E_1) + T_z(E_0)`, :math:`E_0' = T_1(E_0)`
    (:math:`(\sigma^z)^2 = 1`). The left environment :math:`L_l` after sites
    :math:`0..l-1` is the Gram matrix of the left Schmidt vectors, so
    :math:`\mathrm{Tr}\rho_A^2 = \mathrm{Tr} L_l^2`.
    """
    n = len(tensors)
    sx_op, sz_op = PAULI["X"], PAULI["Z"]
    lefts = [np.ones((1, 1), dtype=complex)]
    for b in tensors:
        lefts.append(_transfer(lefts[-1], b))

    def trace(mat):
        return float(np.real(np.trace(mat)))

    sx = np.array([trace(_transfer(lefts[i], tensors[i], sx_op)) for i in range(n)])
    corr = {}
    for name, op in (("szsz", sz_op), ("sxsx", sx_op)):
        values = [1.0]
        env = _transfer(lefts[0], tensors[0], op)
        for j in range(1, n):
            values.append(trace(_transfer(env, tensors[j], op)))
            env = _transfer(env, tensors[j])
        corr[name] = np.array(values)
    e0, e1, e2 = lefts[0], np.zeros((1, 1), complex), np.zeros((1, 1), complex)
    for b in tensors:
        e2 = _transfer(e2, b) + 2.0 * _transfer(e1, b, sz_op) + _transfer(e0, b)
        e1 = _transfer(e1, b) + _transfer(e0, b, sz_op)
        e0 = _transfer(e0, b)
    renyi2 = np.array([-np.log(np.real(np.trace(lefts[l] @ lefts[l]))) for l in range(1, n)])
    return {"sx": sx, "szsz": corr["szsz"], "sxsx": corr["sxsx"], "mu_x": sx.mean(),
            "mu_z": np.sqrt(trace(e2)) / n, "renyi2": renyi2}


# ----------------------------------------------------------------------------- estimates from samples


def estimate_from_samples(outcomes: np.ndarray, povm: POVM) -> dict[str, np.ndarray]:
    r"""Unbiased sample estimates (and standard errors, keys ``<name>_err``) of
    the observables in the module docstring from i.i.d. outcomes ``(M, N)``.

    With :math:`\hat x_i = \mathrm{Tr}(\sigma^x Q_{a_i})`,
    :math:`\hat z_i = \mathrm{Tr}(\sigma^z Q_{a_i})`:
    :math:`\langle\sigma^x_n\rangle \approx \overline{\hat x_n}`,
    :math:`\langle\sigma^z_0\sigma^z_n\rangle \approx \overline{\hat z_0\hat z_n}` (:math:`n\ge1`),
    :math:`\mu_z^2 \approx \overline{[(\sum_i\hat z_i)^2 - \sum_i\hat z_i^2 + N]}/N^2`
    (the diagonal :math:`i=j` terms are replaced by their exact value
    :math:`(\sigma^z_i)^2 = 1`). :math:`\mu_z` is the square root (clipped at
    0), its error from the delta method.
    """
    outcomes = np.asarray(outcomes, dtype=np.int64)
    m, n = outcomes.shape
    xh = povm.estimator("X")[outcomes]
    zh = povm.estimator("Z")[outcomes]

    def mean_err(values):
        return values.mean(axis=0), values.std(axis=0, ddof=1) / np.sqrt(m)

    out = {}
    out["sx"], out["sx_err"] = mean_err(xh)
    for name, hat in (("szsz", zh), ("sxsx", xh)):
        mean, err = mean_err(hat[:, :1] * hat[:, 1:])
        out[name] = np.concatenate([[1.0], mean])
        out[f"{name}_err"] = np.concatenate([[0.0], err])
    out["mu_x"], out["mu_x_err"] = mean_err(xh.mean(axis=1))
    m2, m2_err = mean_err((zh.sum(axis=1) ** 2 - (zh**2).sum(axis=1) + n) / n**2)
    out["mu_z"] = np.sqrt(max(m2, 0.0))
    out["mu_z_err"] = m2_err / (2.0 * max(out["mu_z"], 1e-12))
    return out


def bhattacharyya(p: np.ndarray, q: np.ndarray) -> float:
    r"""Classical fidelity :math:`\sum_a \sqrt{p(a)\, q(a)}` of two distributions."""
    return float(np.sum(np.sqrt(np.clip(p, 0, None) * np.clip(q, 0, None))))


def empirical_distribution(outcomes: np.ndarray) -> np.ndarray:
    """Histogram of outcomes ``(M, N)`` as a flat table of :math:`4^N` frequencies (site 0 most significant)."""
    outcomes = np.asarray(outcomes, dtype=np.int64)
    n = outcomes.shape[1]
    flat = np.ravel_multi_index(outcomes.T, (4,) * n)
    return np.bincount(flat, minlength=4**n) / outcomes.shape[0]


def _pair_sum(counts: np.ndarray, kernel: np.ndarray, block: int) -> float:
    """:math:`\\sum_{a,a'} c(a) c(a') \\prod_i K_{a_i a'_i}` with ``counts`` over ``(4,)*block``."""
    t = counts.reshape((4,) * block)
    for i in range(block):
        t = np.moveaxis(np.tensordot(kernel, t, axes=([1], [i])), 0, i)
    return float(np.dot(counts, t.ravel()))


def renyi2_from_samples(outcomes: np.ndarray, povm: POVM, block: int, n_jackknife: int = 16) -> dict[str, float]:
    r"""Rényi-2 entropy of the left block :math:`A = \{0..l-1\}` from POVM samples.

    Derivation: the block's reduced state is :math:`\rho_A = \sum_{a} p_A(a)\,Q_a`
    with :math:`Q_a = \bigotimes_{i\in A} Q_{a_i}` and :math:`p_A` the marginal
    outcome distribution on :math:`A` (the other sites' elements sum to 1).
    With :math:`\mathrm{Tr}(Q_b Q_c) = (T^{-1})_{bc}`,

    .. math::
        \mathrm{Tr}\rho_A^2 = \sum_{a,a'} p_A(a)\,p_A(a') \prod_{i\in A}(T^{-1})_{a_i a'_i}
        = \mathbb{E}_{a,a'\ \mathrm{i.i.d.}}\Big[\prod_{i\in A}(T^{-1})_{a_i a'_i}\Big].

    The estimate is the U-statistic over all :math:`M(M-1)` ordered pairs of
    distinct samples (unbiased for the purity), computed exactly from the
    block histogram :math:`c`: :math:`[c^T (T^{-1})^{\otimes l} c - \sum_a c(a)\prod_i (T^{-1})_{a_ia_i}] / (M(M-1))`.
    For the tetrahedral POVM :math:`(T^{-1})_{bb} = 5`, :math:`(T^{-1})_{b\ne c} = -1`,
    so the kernel's variance grows like :math:`\sim 7^l`: large blocks need many samples.
    :math:`S_2 = -\ln(\text{purity})` (NaN if the estimate is not positive);
    errors by delete-a-group jackknife over ``n_jackknife`` groups.

    Returns ``{'purity', 'purity_err', 'S2', 'S2_err'}``.
    """
    outcomes = np.asarray(outcomes, dtype=np.int64)[:, :block]
    m = outcomes.shape[0]
    kernel = povm.overlap_inv
    diag = np.diag(kernel)
    index = np.ravel_multi_index(outcomes.T, (4,) * block)
    self_weight = np.prod(diag[outcomes], axis=1)

    def purity_of(idx, weights):
        counts = np.bincount(idx, minlength=4**block).astype(float)
        k = idx.size
        return (_pair_sum(counts, kernel, block) - weights.sum()) / (k * (k - 1))

    def entropy(p):
        return -np.log(p) if p > 0 else np.nan

    purity = purity_of(index, self_weight)
    groups = np.array_split(np.arange(m), n_jackknife)
    jack = np.array([purity_of(np.delete(index, g), np.delete(self_weight, g)) for g in groups])
    g = len(groups)
    purity_err = np.sqrt((g - 1) / g * np.sum((jack - jack.mean()) ** 2))
    s_jack = np.array([entropy(p) for p in jack])
    s2_err = np.sqrt((g - 1) / g * np.sum((s_jack - s_jack.mean()) ** 2)) if np.all(jack > 0) else np.nan
    return {"purity": float(purity), "purity_err": float(purity_err), "S2": float(entropy(purity)), "S2_err": float(s2_err)}


def susceptibility_fd(fields: np.ndarray, values: np.ndarray) -> np.ndarray:
    r"""Central finite differences :math:`\chi(h_k) = [\mu(h_{k+1}) - \mu(h_{k-1})]/(h_{k+1} - h_{k-1})`
    on a field grid (one-sided at the ends; ``numpy.gradient``, second order inside)."""
    return np.gradient(np.asarray(values, dtype=float), np.asarray(fields, dtype=float))
