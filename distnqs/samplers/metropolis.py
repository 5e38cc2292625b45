r"""Metropolis-Hastings Markov chains, many per rank, persistent between steps.

One *sweep* is ``sweep_size`` (default N) proposals per chain; a proposal
:math:`s\to s'` from the rule is accepted with probability
:math:`\min\big(1, e^{2\,\mathrm{Re}[\log\psi(s')-\log\psi(s)]}\big)`.
Each call to :meth:`MetropolisSampler.sample` runs ``n_discard`` burn-in
sweeps, then records one configuration per sweep, ``n_samples_per_chain``
times. Chains on different ranks use independent keys (seed, rank, step).

The random numbers of a sweep (the rule's sites, or its keys, and the
uniforms :math:`u`) are drawn at the start of the sweep. With a flip rule
(:mod:`distnqs.samplers.rules.flips`) and an ansatz with look-up tables
(``fast_update``, e.g. :class:`distnqs.models.rbm.RBMFastUpdate`),
:math:`\log\psi(s')-\log\psi(s)` comes from the tables in :math:`O(M)` instead of a
forward pass; the tables are rebuilt from the configurations at the start of
every sweep. Both paths consume the same random numbers and make the same
decisions (up to rounding in the last bits of the ratio), so they give the same chains.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from distnqs.samplers.base import SamplerState, random_spins
from distnqs.samplers.rules.flips import apply_flips


@dataclass(frozen=True)
class MetropolisSampler:
    rule: Any
    n_sites: int
    n_chains: int  # chains on this rank
    n_samples_per_chain: int
    n_discard: int = 16
    sweep_size: int | None = None
    magnetization: int | None = None  # fixed sum_i s_i of the initial states, if any
    fast_update: Any = None  # the ansatz's look-up-table protocol (Ansatz.fast_update), or None

    @property
    def is_markov_chain(self) -> bool:
        return True

    @property
    def uses_fast_update(self) -> bool:
        """Whether moves use the ansatz's look-up tables (needs a flip rule)."""
        return self.fast_update is not None and hasattr(self.fast_update, "flip") and hasattr(self.rule, "random_sites")

    def init_state(self, log_psi, params, key) -> SamplerState:
        sigma = random_spins(key, self.n_chains, self.n_sites, self.magnetization)
        zero = jnp.zeros((), jnp.int32)
        return SamplerState(sigma, zero, zero)

    def _draws(self, key):
        """The random numbers of one sweep: per move, the rule's sites (or key) and :math:`\\log(1-u)`."""
        sweep_size = self.sweep_size or self.n_sites
        k_rule, k_acc = jax.random.split(key)
        if hasattr(self.rule, "random_sites"):
            moves = self.rule.random_sites(k_rule, (sweep_size, self.n_chains), self.n_sites)
        else:
            moves = jax.random.split(k_rule, sweep_size)
        u = jax.random.uniform(k_acc, (sweep_size, self.n_chains), dtype=jnp.float64)
        return moves, jnp.log1p(-u)  # log(1-u), u in [0,1): never log 0

    def _generic_sweep(self, log_psi, params, carry):
        """One sweep with a forward pass per move; carries :math:`2\\,\\mathrm{Re}\\log\\psi(s)`."""
        sigma, logp, n_acc, key = carry
        key, k_sweep = jax.random.split(key)
        moves, log_1mu = self._draws(k_sweep)

        def move(t, c):
            sigma, logp, n_acc = c
            if hasattr(self.rule, "random_sites"):
                proposal = apply_flips(sigma, moves[t], self.rule.flip_mask(sigma, moves[t]))
            else:
                proposal = self.rule.transition(moves[t], sigma)
            logp_new = 2.0 * jnp.real(log_psi(params, proposal))
            accept = log_1mu[t] < logp_new - logp
            sigma = jnp.where(accept[:, None], proposal, sigma)
            logp = jnp.where(accept, logp_new, logp)
            return sigma, logp, n_acc + jnp.sum(accept, dtype=jnp.int32)

        sigma, logp, n_acc = jax.lax.fori_loop(0, moves.shape[0], move, (sigma, logp, n_acc))
        return sigma, logp, n_acc, key

    def _fast_sweep(self, log_psi, params, tables, carry):
        r"""One sweep with look-up tables: :math:`\log\psi(s')-\log\psi(s)` from ``fast_update.flip``.

        If any move's ratio was not reliable (ill-conditioned tables), the sweep
        is redone from the same configurations and random numbers with forward passes.
        """
        sigma0, logp, n_acc0, key = carry
        key, k_sweep = jax.random.split(key)
        sites, log_1mu = self._draws(k_sweep)

        def move(t, c):
            sigma, lookup, n_acc, reliable = c
            mask = self.rule.flip_mask(sigma, sites[t])
            dlog, lookup_new, ok = self.fast_update.flip(tables, sigma, lookup, sites[t], mask)
            accept = log_1mu[t] < 2.0 * jnp.real(dlog)
            sigma = apply_flips(sigma, sites[t], mask & accept[:, None])
            lookup = jax.tree_util.tree_map(lambda new, old: jnp.where(accept.reshape(-1, *([1] * (old.ndim - 1))), new, old), lookup_new, lookup)
            return sigma, lookup, n_acc + jnp.sum(accept, dtype=jnp.int32), reliable & ok

        init = (sigma0, self.fast_update.init_lookup(tables, sigma0), n_acc0, jnp.asarray(True))
        sigma, _, n_acc, reliable = jax.lax.fori_loop(0, sites.shape[0], move, init)

        def redo(_):
            logp0 = 2.0 * jnp.real(log_psi(params, sigma0))
            s, _, n, _ = self._generic_sweep(log_psi, params, (sigma0, logp0, n_acc0, carry[3]))
            return s, n

        sigma, n_acc = jax.lax.cond(reliable, lambda _: (sigma, n_acc), redo, None)
        return sigma, logp, n_acc, key

    def sample(self, log_psi, params, state: SamplerState, key):
        """Burn in, then one recorded configuration per sweep per chain."""
        sigma = state.sigma
        if self.uses_fast_update:
            tables = self.fast_update.tables(params)
            logp = jnp.zeros(sigma.shape[0], jnp.float64)  # unused by the fast path (it needs ratios only)

            def sweep(c):
                return self._fast_sweep(log_psi, params, tables, c)
        else:
            logp = 2.0 * jnp.real(log_psi(params, sigma))

            def sweep(c):
                return self._generic_sweep(log_psi, params, c)

        carry = (sigma, logp, jnp.zeros((), jnp.int32), key)
        if self.n_discard > 0:
            carry = jax.lax.fori_loop(0, self.n_discard, lambda _, c: sweep(c), carry)

        def record(c, _):
            c = sweep(c)
            return c, c[0]

        carry, trace = jax.lax.scan(record, carry, None, length=self.n_samples_per_chain)
        sigma, _, n_acc, _ = carry
        n_prop = (self.n_discard + self.n_samples_per_chain) * (self.sweep_size or self.n_sites) * self.n_chains
        samples = jnp.swapaxes(trace, 0, 1)  # (n_chains, n_samples_per_chain, N)
        return samples, SamplerState(sigma, n_acc, jnp.asarray(n_prop, jnp.int32))
