r"""Exact i.i.d. sampling of an autoregressive ansatz (Sharir et al., PRL 124, 020503 (2020)).

.. math::  s_0 \sim |\psi_0(\cdot)|^2,\quad s_1 \sim |\psi_1(\cdot|s_0)|^2,\ \ldots,\quad
           s_{N-1} \sim |\psi_{N-1}(\cdot|s_{<N-1})|^2
           \;\Rightarrow\; s \sim |\psi(s)|^2 \text{ exactly (normalized } \psi\text{)}.

No chains, no burn-in, no autocorrelation: every rank draws its own batch of
``n_samples`` configurations from the key it is given (already derived from
(seed, rank, step) by :func:`distnqs.comm.step_key`), so the ranks' samples
are independent and a step is a pure function of (seed, rank, step).

The samples come from the module's ``sample(key, n)`` method (for
:class:`distnqs.models.naqs.NAQS`: the cached sampler, about one forward pass
per configuration, or the uncached one, N forward passes, chosen by its
``cached`` option); ``cached`` here overrides that choice when not ``None``.
For the step the sampler looks like ``n_samples`` chains of one sample each;
acceptance is 1 (``n_accepted = n_proposed = n_samples``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp

from distnqs.errors import ConfigError
from distnqs.models.base import from_real
from distnqs.samplers.base import SamplerState


@dataclass(frozen=True, eq=False)
class DirectSampler:
    ansatz: Any  # distnqs.models.Ansatz whose module has is_autoregressive and sample(key, n)
    n_sites: int
    n_samples: int  # samples on this rank per call
    cached: bool | None = None  # None: the module's own choice

    def __post_init__(self):
        module = self.ansatz.module
        if not getattr(module, "is_autoregressive", False) or not hasattr(module, "sample"):
            raise ConfigError(f"sampler 'direct' needs an autoregressive ansatz with a sample method, got {type(module).__name__}")
        if not isinstance(self.n_samples, int) or self.n_samples < 1:
            raise ConfigError(f"direct sampler needs a positive number of samples per rank, got {self.n_samples!r}")

    @property
    def n_chains(self) -> int:
        return self.n_samples

    @property
    def n_samples_per_chain(self) -> int:
        return 1

    @property
    def is_markov_chain(self) -> bool:
        return False

    def _method(self):
        cls = type(self.ansatz.module)
        if self.cached is None:
            return cls.sample
        return cls.sample_cached if self.cached else cls.sample_uncached

    def init_state(self, log_psi, params, key) -> SamplerState:
        """State before the first draw: ``sigma`` all +1 (it only records the last batch drawn)."""
        zero = jnp.zeros((), jnp.int32)
        return SamplerState(jnp.ones((self.n_samples, self.n_sites), jnp.float64), zero, zero)

    def sample(self, log_psi, params, state: SamplerState, key):
        """``n_samples`` exact i.i.d. configurations as ``(n_samples, 1, N)`` and the new state.

        ``params`` are the real-view parameters of ``self.ansatz``; ``log_psi``
        is not needed (the module samples from its own conditionals).
        """
        spins = self.ansatz.module.apply({"params": from_real(params)}, key, self.n_samples, method=self._method())
        spins = spins.astype(state.sigma.dtype)
        count = jnp.asarray(self.n_samples, jnp.int32)
        return spins[:, None, :], SamplerState(spins, count, count)
