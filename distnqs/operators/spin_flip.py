r"""Structure of the built-in spin Hamiltonians, for local energies from look-up tables.

The TFIM and (J1-J2) Heisenberg models built in :mod:`distnqs.operators.hamiltonians`
have the form

.. math::
    H = \sum_b c_b\,\sigma^z_{i_b}\sigma^z_{j_b}
      + \sum_k w_k\, g_k(s)\, X_{F_k},

where :math:`X_F` flips the spins of the site set :math:`F` and
:math:`g_k(s) = 1` (TFIM, :math:`F_k = \{k\}`, :math:`w_k = -G`) or
:math:`g_k(s) = [s_i \ne s_j]` (Heisenberg exchange on the bond
:math:`F_k = \{i, j\}`: :math:`\sigma^x\sigma^x + \sigma^y\sigma^y` swaps
antiparallel spins with amplitude 2, :math:`w_k = \pm 2J` with the sign
:math:`-` under the Marshall rotation). The local energy is then

.. math::
    E_\mathrm{loc}(s) = \sum_b c_b s_{i_b}s_{j_b}
      + \sum_k w_k\, g_k(s)\, \frac{\psi(s^{(F_k)})}{\psi(s)},

and an ansatz with look-up tables (``fast_update.flip_log_ratios``) gives all
ratios in one :math:`O(K\,M)` pass instead of :math:`K` forward passes.

The builders *record* this structure on the NetKet operator they return
(:func:`attach`), after checking it against the operator's own matrix
elements on a few configurations; :func:`flip_terms` reads it back. Any other
operator (or one rebuilt by a pytree transformation) has no record and takes
the generic path of :mod:`distnqs.operators.local_energy`.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

_ATTRIBUTE = "_distnqs_flip_terms"
CACHE_ELEMENTS = 2**17  # target size of one (chunk, K, M) intermediate of the local energies


@dataclass(frozen=True, eq=False)
class SpinFlipTerms:
    """Diagonal bonds ``zz_pairs`` with couplings ``zz_couplings``; flip sets ``flips`` with weights."""

    zz_pairs: np.ndarray  # (B, 2) int
    zz_couplings: np.ndarray  # (B,)
    flips: np.ndarray  # (K, k) int: sites flipped together by term k
    flip_weights: np.ndarray  # (K,)
    antiparallel_only: bool  # g_k(s) = [s_i != s_j] (exchange terms, k = 2) instead of 1

    def diagonal(self, s):
        r""":math:`\sum_b c_b s_{i_b} s_{j_b}` for ``s`` ``(batch, N)``."""
        if len(self.zz_pairs) == 0:
            return jnp.zeros(s.shape[0], s.dtype)
        return (s[:, self.zz_pairs[:, 0]] * s[:, self.zz_pairs[:, 1]]) @ jnp.asarray(self.zz_couplings, s.dtype)

    def off_diagonal(self, s):
        r""":math:`w_k\,g_k(s)` ``(batch, K)``: the matrix element :math:`H_{s, s^{(F_k)}}`."""
        w = jnp.asarray(self.flip_weights, s.dtype)[None, :]
        if self.antiparallel_only:
            return jnp.where(s[:, self.flips[:, 0]] != s[:, self.flips[:, 1]], w, 0.0)
        return jnp.broadcast_to(w, (s.shape[0], len(self.flip_weights)))

    def connected(self, state):
        """``{configuration: matrix element}`` of the row ``state`` (numpy, for checks)."""
        s = np.asarray(state, dtype=np.float64)
        row = {tuple(s): float(np.sum(self.zz_couplings * s[self.zz_pairs[:, 0]] * s[self.zz_pairs[:, 1]]))}
        for sites, w in zip(self.flips, self.flip_weights):
            if self.antiparallel_only and s[sites[0]] == s[sites[1]]:
                continue
            t = s.copy()
            t[sites] *= -1
            row[tuple(t)] = row.get(tuple(t), 0.0) + float(w)
        return row


def _netket_row(operator, state):
    conn, mels = operator.get_conn_padded(np.asarray(state, dtype=np.float64)[None])
    row = {}
    for c, m in zip(np.asarray(conn)[0], np.asarray(mels)[0]):
        row[tuple(c)] = row.get(tuple(c), 0.0) + complex(m)
    return row


def agrees_with(terms: SpinFlipTerms, operator, n_states: int = 6, seed: int = 0) -> bool:
    """Whether ``terms`` reproduces the operator's rows on a few random configurations (and all up)."""
    n = operator.hilbert.size
    rng = np.random.default_rng(seed)
    states = [np.ones(n)] + [rng.choice([-1.0, 1.0], size=n) for _ in range(n_states)]
    for state in states:
        ours, theirs = terms.connected(state), _netket_row(operator, state)
        for conf in set(ours) | set(theirs):
            if abs(ours.get(conf, 0.0) - theirs.get(conf, 0.0)) > 1e-12 * (1 + abs(ours.get(conf, 0.0))):
                return False
    return True


def attach(operator, terms: SpinFlipTerms):
    """Record ``terms`` on ``operator`` (after checking them against it); returns ``operator``."""
    if not agrees_with(terms, operator):
        raise AssertionError(f"spin-flip structure disagrees with the NetKet operator {type(operator).__name__}")
    object.__setattr__(operator, _ATTRIBUTE, terms)
    return operator


def flip_terms(operator) -> SpinFlipTerms | None:
    """The recorded :class:`SpinFlipTerms` of a built-in Hamiltonian, else ``None``."""
    return getattr(operator, _ATTRIBUTE, None)


def local_energy_from_flips(fast_update, rparams, terms: SpinFlipTerms, samples, chunk_size=None):
    r""":math:`E_\mathrm{loc}(s) = \sum_b c_b s_is_j + \sum_k w_k g_k(s)\,e^{\log\psi(s^{(F_k)})-\log\psi(s)}`.

    The ratios come from ``fast_update.flip_log_ratios`` (the parameter tables
    are built once, the samples go in chunks of at most ``chunk_size``, fewer
    if a chunk's ``(chunk, K, M)`` intermediates would exceed ``CACHE_ELEMENTS``). Terms with
    :math:`g_k(s) = 0` contribute exactly zero (whatever their ratio).
    """
    from distnqs.operators.local_energy import chunked_map

    tables = fast_update.tables(rparams)
    if hasattr(fast_update, "chunk_size"):  # the protocol knows its own intermediates (NAQS cones)
        auto = fast_update.chunk_size(terms.flips)
    else:  # (chunk, K, M) intermediates that stay in cache are several times faster than (batch, K, M) ones
        width = sum(x.shape[-1] for x in jax.tree_util.tree_leaves(jax.eval_shape(fast_update.init_lookup, tables, samples[:1])))
        auto = max(1, CACHE_ELEMENTS // (len(terms.flip_weights) * width))
    chunk_size = auto if chunk_size is None else min(chunk_size, auto)

    def chunk(s):
        log_ratios = fast_update.flip_log_ratios(tables, s, fast_update.init_lookup(tables, s), terms.flips)
        weights = terms.off_diagonal(s)
        off = jnp.sum(jnp.where(weights != 0, weights * jnp.exp(log_ratios), 0.0), axis=1)
        return terms.diagonal(s) + off

    return chunked_map(chunk, samples, chunk_size)
