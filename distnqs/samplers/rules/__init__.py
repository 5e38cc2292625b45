"""Metropolis transition rules: tiny objects with one method ``transition(key, sigma) -> sigma'``.

All rules here propose symmetrically (:math:`T(s\\to s') = T(s'\\to s)`), so the
acceptance probability is :math:`\\min(1, |\\psi(s')/\\psi(s)|^2)`.
"""

from distnqs.samplers.rules.exchange import ExchangeRule
from distnqs.samplers.rules.local import LocalRule

__all__ = ["ExchangeRule", "LocalRule"]
