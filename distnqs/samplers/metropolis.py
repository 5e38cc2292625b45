r"""Metropolis-Hastings Markov chains, many per rank, persistent between steps.

One *sweep* is ``sweep_size`` (default N) proposals per chain; a proposal
:math:`s\to s'` from the rule is accepted with probability
:math:`\min\big(1, e^{2\,\mathrm{Re}[\log\psi(s')-\log\psi(s)]}\big)`.
Each call to :meth:`MetropolisSampler.sample` runs ``n_discard`` burn-in
sweeps, then records one configuration per sweep, ``n_samples_per_chain``
times. Chains on different ranks use independent keys (seed, rank, step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from distnqs.samplers.base import SamplerState, random_spins


@dataclass(frozen=True)
class MetropolisSampler:
    rule: Any
    n_sites: int
    n_chains: int  # chains on this rank
    n_samples_per_chain: int
    n_discard: int = 16
    sweep_size: int | None = None
    magnetization: int | None = None  # fixed sum_i s_i of the initial states, if any

    @property
    def is_markov_chain(self) -> bool:
        return True

    def init_state(self, log_psi, params, key) -> SamplerState:
        sigma = random_spins(key, self.n_chains, self.n_sites, self.magnetization)
        zero = jnp.zeros((), jnp.int32)
        return SamplerState(sigma, zero, zero)

    def _sweep(self, log_psi, params, carry):
        sweep_size = self.sweep_size or self.n_sites

        def move(_, c):
            sigma, logp, n_acc, key = c
            key, k_rule, k_acc = jax.random.split(key, 3)
            proposal = self.rule.transition(k_rule, sigma)
            logp_new = 2.0 * jnp.real(log_psi(params, proposal))
            u = jax.random.uniform(k_acc, (sigma.shape[0],), dtype=logp.dtype)
            accept = jnp.log1p(-u) < logp_new - logp  # log(1-u), u in [0,1): never log 0
            sigma = jnp.where(accept[:, None], proposal, sigma)
            logp = jnp.where(accept, logp_new, logp)
            return sigma, logp, n_acc + jnp.sum(accept, dtype=jnp.int32), key

        return jax.lax.fori_loop(0, sweep_size, move, carry)

    def sample(self, log_psi, params, state: SamplerState, key):
        """Burn in, then one recorded configuration per sweep per chain."""
        sigma = state.sigma
        logp = 2.0 * jnp.real(log_psi(params, sigma))
        carry = (sigma, logp, jnp.zeros((), jnp.int32), key)
        if self.n_discard > 0:
            carry = jax.lax.fori_loop(0, self.n_discard, lambda _, c: self._sweep(log_psi, params, c), carry)

        def record(c, _):
            c = self._sweep(log_psi, params, c)
            return c, c[0]

        carry, trace = jax.lax.scan(record, carry, None, length=self.n_samples_per_chain)
        sigma, _, n_acc, _ = carry
        n_prop = (self.n_discard + self.n_samples_per_chain) * (self.sweep_size or self.n_sites) * self.n_chains
        samples = jnp.swapaxes(trace, 0, 1)  # (n_chains, n_samples_per_chain, N)
        return samples, SamplerState(sigma, n_acc, jnp.asarray(n_prop, jnp.int32))
