r"""Block Gibbs sampling of :math:`|\psi|^2` for a real RBM.

For real parameters, :math:`\psi(s) = e^{a\cdot s}\prod_j 2\cosh\theta_j =
\sum_{h\in\{\pm1\}^M} e^{a\cdot s + h\cdot\theta}` with
:math:`\theta = b + W^T s`, so :math:`|\psi(s)|^2` is the marginal of an RBM
with a *doubled* hidden layer :math:`(h, h')`:

.. math:: P(s, h, h') \propto e^{2a\cdot s + (h + h')\cdot(b + W^T s)} .

Alternating exact conditional draws gives a Markov chain with stationary
distribution :math:`|\psi|^2` and no rejections:

.. math::
   P(h_j = 1\,|\,s) = \sigma(2\theta_j),\qquad
   P(s_i = 1\,|\,h, h') = \sigma\big(2[\,2a_i + \textstyle\sum_j W_{ij}(h_j + h'_j)]\big),

with :math:`\sigma(x) = 1/(1+e^{-x})` (the same for :math:`h'`). One sweep is
one update of all hidden and then all visible units.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from distnqs.samplers.base import SamplerState, random_spins


def _pm1(key, logits):
    """Draw +-1 with P(+1) = sigmoid(logits)."""
    return jnp.where(jax.random.uniform(key, logits.shape) < jax.nn.sigmoid(logits), 1.0, -1.0)


@dataclass(frozen=True)
class GibbsRBMSampler:
    n_sites: int
    n_chains: int
    n_samples_per_chain: int
    n_discard: int = 16

    @property
    def is_markov_chain(self) -> bool:
        return True

    def init_state(self, log_psi, params, key) -> SamplerState:
        zero = jnp.zeros((), jnp.int32)
        return SamplerState(random_spins(key, self.n_chains, self.n_sites), zero, zero)

    @staticmethod
    def _weights(params):
        W = params["kernel"]
        a = params.get("visible_bias", jnp.zeros(W.shape[0], W.dtype))
        b = params.get("hidden_bias", jnp.zeros(W.shape[1], W.dtype))
        return W, a, b

    def _sweep(self, params, sigma, key):
        W, a, b = self._weights(params)
        k1, k2, k3 = jax.random.split(key, 3)
        theta = sigma @ W + b
        h = _pm1(k1, 2.0 * theta)
        h2 = _pm1(k2, 2.0 * theta)
        return _pm1(k3, 2.0 * (2.0 * a + (h + h2) @ W.T))

    def sample(self, log_psi, params, state: SamplerState, key):
        k_burn, k_rec = jax.random.split(key)
        sigma = jax.lax.fori_loop(
            0, self.n_discard, lambda i, s: self._sweep(params, s, jax.random.fold_in(k_burn, i)), state.sigma
        )

        def record(s, k):
            s = self._sweep(params, s, k)
            return s, s

        sigma, trace = jax.lax.scan(record, sigma, jax.random.split(k_rec, self.n_samples_per_chain))
        n = jnp.asarray((self.n_discard + self.n_samples_per_chain) * self.n_chains * self.n_sites, jnp.int32)
        return jnp.swapaxes(trace, 0, 1), SamplerState(sigma, n, n)
