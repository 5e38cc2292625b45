"""Estimators: statistics, energy gradient, S-matrix products (all reduced over ranks)."""

from distnqs.estimators.gradient import energy_gradient
from distnqs.estimators.qgt import centered_jacobian, qgt_dense, qgt_matvec
from distnqs.estimators.stats import Stats, statistics

__all__ = ["Stats", "centered_jacobian", "energy_gradient", "qgt_dense", "qgt_matvec", "statistics"]
