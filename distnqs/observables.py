r"""Observables of the final parameters: the ``[observables]`` set and :func:`measure` for any operator.

``[observables]`` keys (booleans; see README):

- ``magnetization`` (default true): :math:`m = \frac1N\sum_i s_i`, :math:`|m|`, :math:`m^2`
  (computed by :class:`distnqs.step.VMCStep` at every step);
- ``sx``: :math:`\langle\sigma^x\rangle = \frac1N\sum_i\langle\sigma^x_i\rangle`;
- ``correlations``: :math:`C^{zz}(\mathbf r) = \langle\sigma^z_0\sigma^z_\mathbf r\rangle` against
  displacement and distance (translation average with periodic boundaries, average over all pairs
  at that displacement on an open lattice), and for Heisenberg / J1-J2 models also
  :math:`C^{SS}(\mathbf r) = \langle\vec S_0\cdot\vec S_\mathbf r\rangle = \frac14\langle\vec\sigma_0\cdot\vec\sigma_\mathbf r\rangle`
  (spin-1/2 units);
- ``structure_factor``: :math:`S^{zz}(\mathbf k) = \frac1N\sum_{ij}e^{i\mathbf k\cdot(\mathbf r_i-\mathbf r_j)}\langle\sigma^z_i\sigma^z_j\rangle`
  (Pauli units) and, for Heisenberg / J1-J2, :math:`S(\mathbf k) = \frac1N\sum_{ij}e^{i\mathbf k\cdot(\mathbf r_i-\mathbf r_j)}\langle\vec S_i\cdot\vec S_j\rangle`
  (spin-1/2 units) on the grid :math:`2\pi n/L`, with :math:`S(\pi,\pi)` reported separately.

The local values are :mod:`distnqs.operators.observables` (formulas, the Marshall-sign
treatment, the displacement classes and the cost); each observable gets the statistics of
:mod:`distnqs.estimators.stats` (chains, autocorrelation, all ranks) per evaluation batch, and
the batches are combined by :func:`distnqs.estimators.stats.combine_batches`. They are
evaluated only in the final evaluation (``[run] eval_steps`` batches with the final parameters,
the same samples as the final energy), never during the optimization.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from distnqs import comm
from distnqs.errors import ConfigError
from distnqs.estimators.stats import Stats, combine_batches, statistics, statistics_components
from distnqs.operators import observables as ops
from distnqs.operators.lattice import Lattice
from distnqs.operators.local_energy import local_values

EXCHANGE_MODELS = ("heisenberg", "j1j2")
MAX_EXCHANGE_CONFIGS = 2**16  # default chunk for the S.S pair matrix: samples * N(N-1)/2 configurations


@dataclass(frozen=True, eq=False)
class ObservableSet:
    """The extra observables of ``[observables]`` on one lattice (static tables built once).

    ``exchange``: also the :math:`\\vec S\\cdot\\vec S` versions (Heisenberg-type models);
    ``sign_rule``: the Hamiltonian was Marshall-rotated, so the network holds :math:`U\\psi`
    (:mod:`distnqs.operators.observables`); ``chunk_size``: samples per chunk of the forward
    passes (``None``: all of them for :math:`\\sigma^x`, and at most
    :data:`MAX_EXCHANGE_CONFIGS` configurations per chunk for the pair matrix).
    """

    lattice: Lattice
    sx: bool = False
    correlations: bool = False
    structure_factor: bool = False
    exchange: bool = False
    sign_rule: bool = False
    chunk_size: int | None = None
    tables: dict = field(init=False, repr=False)

    def __post_init__(self):
        if self.sign_rule and not ops.is_bipartite(self.lattice):
            raise ConfigError(f"[observables] the Marshall sign rule is no basis rotation on the {self.lattice.describe()} lattice "
                              "(not bipartite); switch the observables off or use sign_rule = false")
        disp, partner, weight, distance = ops.displacement_classes(self.lattice)
        ks = ops.k_grid(self.lattice)
        tables = {
            "displacement": disp, "partner": partner, "weight": weight, "distance": distance, "k": ks,
            "phases": ops.structure_factor_phases(self.lattice, ks),
            "site_signs": ops.sublattice_signs(self.lattice) if self.sign_rule else None,
        }
        object.__setattr__(self, "tables", tables)

    @property
    def any(self) -> bool:
        return self.sx or self.correlations or self.structure_factor

    @property
    def pair_chunk(self) -> int:
        n = self.lattice.n_sites
        return self.chunk_size or max(1, MAX_EXCHANGE_CONFIGS // (n * (n - 1) // 2))

    def local_values(self, log_psi, params, samples, log_psi_samples=None) -> dict:
        """Local values per sample ``(b, N) -> {name: (b,) or (b, K)}``.

        Names: ``sx``; ``correlation_zz``, ``correlation_ss`` (``(b, D)``, displacement classes);
        ``structure_factor_zz``, ``structure_factor_ss`` (``(b, K)``, the k grid then (pi, pi)).
        """
        if log_psi_samples is None:
            log_psi_samples = log_psi(params, samples)
        t = self.tables
        out = {}
        if self.sx:
            out["sx"] = ops.sx_local(log_psi, params, samples, log_psi_samples, self.chunk_size, t["site_signs"])
        if self.correlations:
            out["correlation_zz"] = ops.correlations_from_matrix(ops.pair_matrix_zz(samples), t["partner"], t["weight"])
        if self.structure_factor:
            out["structure_factor_zz"] = ops.structure_factor_zz(samples, t["phases"])
        if self.exchange and (self.correlations or self.structure_factor):
            m = ops.pair_matrix_exchange(log_psi, params, samples, log_psi_samples, self.pair_chunk, t["site_signs"]) / 4.0
            if self.correlations:
                out["correlation_ss"] = ops.correlations_from_matrix(m, t["partner"], t["weight"])
            if self.structure_factor:
                out["structure_factor_ss"] = ops.structure_factor_from_matrix(m, t["phases"])
        return out

    def estimate(self, log_psi, params, samples) -> dict:
        """:class:`Stats` of every observable for ``samples`` ``(chains, per_chain, N)`` (jit-compatible)."""
        nc, ns, n = samples.shape
        values = self.local_values(log_psi, params, samples.reshape(nc * ns, n))
        return {
            name: statistics(v.reshape(nc, ns)) if v.ndim == 1 else statistics_components(v.reshape(nc, ns, v.shape[-1]))
            for name, v in values.items()
        }

    def summary(self, stats: dict) -> dict:
        """The ``summary.json`` / ``observables.h5`` entries from combined :class:`Stats` (host arrays)."""
        def me(st, index=Ellipsis):
            mean, err = np.real(np.asarray(st.mean))[index], np.asarray(st.error_of_mean)[index]
            return {"mean": mean.tolist(), "error": err.tolist()}

        t, out = self.tables, {}
        if "sx" in stats:
            out["sx"] = me(stats["sx"])
        if "correlation_zz" in stats:
            corr = {"displacement": t["displacement"].tolist(), "distance": t["distance"].tolist(), "zz": me(stats["correlation_zz"])}
            if "correlation_ss" in stats:
                corr["spin_spin"] = me(stats["correlation_ss"])
            out["correlations"] = corr
        if "structure_factor_zz" in stats:
            sk = {"k": t["k"][:-1].tolist(), "shape": [self.lattice.Ly, self.lattice.Lx], "zz": me(stats["structure_factor_zz"], slice(0, -1))}
            pi = {"k": t["k"][-1].tolist(), "zz": me(stats["structure_factor_zz"], -1)}
            if "structure_factor_ss" in stats:
                sk["spin_spin"] = me(stats["structure_factor_ss"], slice(0, -1))
                pi["spin_spin"] = me(stats["structure_factor_ss"], -1)
            sk["pi"] = pi
            out["structure_factor"] = sk
        return out


def build_observables(cfg: dict, lattice: Lattice, chunk_size: int | None = None) -> ObservableSet | None:
    """The :class:`ObservableSet` of a resolved config (``None`` when no extra observable is asked for)."""
    obs, ham = cfg.get("observables", {}), cfg.get("hamiltonian", {})
    chosen = {k: bool(obs.get(k, False)) for k in ("sx", "correlations", "structure_factor")}
    if not any(chosen.values()):
        return None
    return ObservableSet(lattice, **chosen, exchange=ham.get("model") in EXCHANGE_MODELS,
                         sign_rule=bool(ham.get("sign_rule", False)), chunk_size=chunk_size)


# ---------------------------------------------------------------------------
# Python API: any NetKet operator with the final parameters
# ---------------------------------------------------------------------------

def measure(problem, params, operators, *, sampler_state=None, n_batches: int = 4, chunk_size: int | None = None) -> dict:
    r"""Monte Carlo estimate :math:`\langle\psi|O|\psi\rangle/\langle\psi|\psi\rangle` of NetKet operators.

    ``problem``: a :class:`distnqs.problem.Problem` (its ansatz, sampler and seed);
    ``params``: e.g. the final parameters of a run; ``operators``: one NetKet discrete
    operator or a dict ``{name: operator}``. Samples ``n_batches`` batches of the
    problem's sampler (keys ``fold_in(step_key(seed, k), 3)``, disjoint from the
    training and final-evaluation keys), local values
    :math:`O_\mathrm{loc}(s)=\sum_{s'}O_{ss'}\psi(s')/\psi(s)` (chunks of
    ``chunk_size`` samples), statistics over chains and ranks per batch, batches
    combined as in the final evaluation. Call it on every rank (it reduces over ranks).

    Returns ``{name: {"mean", "mean_imag", "error", "variance", "tau_corr", "R_hat"}}``
    (a single such dict when ``operators`` is one operator).
    """
    from distnqs.operators.hamiltonians import as_jax_operator

    single = not isinstance(operators, dict)
    ops_dict = {"O": operators} if single else dict(operators)
    ops_dict = {name: as_jax_operator(op) for name, op in ops_dict.items()}
    log_psi, sampler, seed = problem.ansatz.log_psi, problem.sampler, problem.cfg["seed"]
    if sampler_state is None:
        sampler_state = sampler.init_state(log_psi, params, comm.rank_key(seed + 1))

    @jax.jit
    def batch(params, sampler_state, index):
        key = jax.random.fold_in(comm.step_key(seed, index), 3)
        samples, sampler_state = sampler.sample(log_psi, params, sampler_state, key)
        nc, ns, n = samples.shape
        flat = samples.reshape(nc * ns, n)
        lp = log_psi(params, flat)
        return sampler_state, {
            name: statistics(local_values(log_psi, params, op, flat, lp, chunk_size).reshape(nc, ns))
            for name, op in ops_dict.items()
        }

    batches = []
    for k in range(n_batches):
        sampler_state, stats = batch(params, sampler_state, jnp.asarray(k, jnp.int32))
        batches.append(jax.device_get(stats))
    out = {name: combine_batches([b[name] for b in batches]).to_dict() for name in ops_dict}
    return out["O"] if single else out


__all__ = ["ObservableSet", "build_observables", "measure", "Stats"]
