"""Metropolis transition rules: tiny objects with one method ``transition(key, sigma) -> sigma'``.

All rules here propose symmetrically (:math:`T(s\\to s') = T(s'\\to s)`), so the
acceptance probability is :math:`\\min(1, |\\psi(s')/\\psi(s)|^2)`. The built-in
rules are also *flip rules* (:mod:`distnqs.samplers.rules.flips`): they say
which sites a move flips, so that samplers can use an ansatz's look-up tables.
"""

from distnqs.samplers.rules.exchange import ExchangeRule
from distnqs.samplers.rules.flips import apply_flips
from distnqs.samplers.rules.local import LocalRule

__all__ = ["ExchangeRule", "LocalRule", "apply_flips"]
