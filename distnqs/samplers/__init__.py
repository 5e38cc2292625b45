"""Samplers of :math:`|\\psi(s)|^2`: Metropolis chains, block Gibbs (real RBM),
and exact autoregressive sampling (``direct``, for autoregressive ansätze).

``[sampler]`` table:

- ``kind``: ``metropolis_local`` | ``metropolis_exchange`` | ``gibbs`` | ``direct``
- ``n_samples``: samples per step over *all* ranks
- ``n_chains``: Markov chains over all ranks (divisible by the number of ranks;
  ``n_samples`` divisible by ``n_chains``)
- ``n_discard``: burn-in sweeps per chain at the start of every step
- ``sweep_size``: proposals per sweep (default N)

Metropolis moves use the ansatz's look-up tables (RBM) when it has them and
``[run] fast_update`` is true (the default): the same chains, without a
forward pass per move.
"""

from __future__ import annotations

from distnqs.errors import ConfigError
from distnqs.samplers.base import SamplerState, random_spins
from distnqs.samplers.gibbs import GibbsRBMSampler
from distnqs.samplers.metropolis import MetropolisSampler
from distnqs.samplers.rules import ExchangeRule, LocalRule

KINDS = ("metropolis_local", "metropolis_exchange", "gibbs", "direct")
_OPTIONS = {"kind", "n_samples", "n_chains", "n_discard", "sweep_size"}


def hilbert_magnetization(hilbert):
    """Fixed :math:`\\sum_i s_i` of a constrained NetKet spin space, else ``None``."""
    total_sz = getattr(hilbert, "_total_sz", None)
    return None if total_sz is None else int(round(2 * total_sz))


def build_sampler(cfg: dict, lattice, hilbert, ansatz, n_ranks: int, fast_update: bool = True):
    """Sampler of this rank from the ``[sampler]`` table (sizes checked against ``n_ranks``).

    ``fast_update``: let Metropolis moves use the ansatz's look-up tables when it
    has them (``[run] fast_update``; same chains, fewer operations).
    """
    kind = cfg.get("kind", "metropolis_local")
    if kind not in KINDS:
        raise ConfigError(f"unknown sampler kind {kind!r}; choose one of: {', '.join(KINDS)}")
    unknown = set(cfg) - _OPTIONS
    if unknown:
        raise ConfigError(f"[sampler] has no option {sorted(unknown)[0]!r} (options: {', '.join(sorted(_OPTIONS))})")
    n_samples = cfg.get("n_samples", 1024)
    if not isinstance(n_samples, int) or n_samples < 1:
        raise ConfigError(f"[sampler] n_samples must be a positive integer, got {n_samples!r}")
    n_sites = lattice.n_sites
    magnetization = hilbert_magnetization(hilbert)

    if kind == "direct":
        if not ansatz.is_autoregressive:
            raise ConfigError("sampler 'direct' needs an autoregressive ansatz (model = \"naqs\")")
        if n_samples % n_ranks:
            raise ConfigError(f"n_samples = {n_samples} is not divisible among {n_ranks} ranks")
        try:
            from distnqs.samplers.direct import DirectSampler
        except ModuleNotFoundError as exc:
            raise ConfigError("sampler 'direct' is not available in this installation") from exc

        return DirectSampler(ansatz=ansatz, n_sites=n_sites, n_samples=n_samples // n_ranks)

    n_chains = cfg.get("n_chains", 16)
    if not isinstance(n_chains, int) or n_chains < 1:
        raise ConfigError(f"[sampler] n_chains must be a positive integer, got {n_chains!r}")
    if n_chains % n_ranks:
        raise ConfigError(f"n_chains = {n_chains} is not divisible among {n_ranks} ranks")
    if n_samples % n_chains:
        raise ConfigError(f"n_samples = {n_samples} is not divisible among n_chains = {n_chains} chains")
    n_discard = cfg.get("n_discard", 16)
    if not isinstance(n_discard, int) or n_discard < 0:
        raise ConfigError(f"[sampler] n_discard must be a non-negative integer, got {n_discard!r}")
    sizes = dict(n_sites=n_sites, n_chains=n_chains // n_ranks, n_samples_per_chain=n_samples // n_chains, n_discard=n_discard)

    if kind == "gibbs":
        from distnqs.models.rbm import RBM

        module = ansatz.module
        if not isinstance(module, RBM) or "complex" in str(module.param_dtype):
            raise ConfigError("sampler 'gibbs' needs a real RBM ansatz (model = \"rbm\", real param_dtype)")
        if magnetization is not None:
            raise ConfigError("sampler 'gibbs' cannot keep total_sz fixed; use metropolis_exchange")
        return GibbsRBMSampler(**sizes)

    sweep_size = cfg.get("sweep_size", n_sites)
    if kind == "metropolis_local":
        if magnetization is not None:
            raise ConfigError("single spin flips break the fixed total_sz; use sampler kind 'metropolis_exchange'")
        rule = LocalRule()
    else:
        rule = ExchangeRule(tuple(lattice.nearest_neighbour_pairs()))
    fast = ansatz.fast_update if fast_update else None
    return MetropolisSampler(rule=rule, sweep_size=sweep_size, magnetization=magnetization, fast_update=fast, **sizes)


__all__ = [
    "ExchangeRule",
    "GibbsRBMSampler",
    "KINDS",
    "LocalRule",
    "MetropolisSampler",
    "SamplerState",
    "build_sampler",
    "hilbert_magnetization",
    "random_spins",
]
