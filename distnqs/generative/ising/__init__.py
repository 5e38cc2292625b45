"""Classical 2D Ising configurations: Wolff Monte Carlo, exact results, VAEs.

Reproduces the study of D. Yevick, "Variational autoencoder analysis of Ising
model statistical distributions and phase transitions", Eur. Phys. J. B 95, 54
(2022), arXiv:2104.06368: equilibrium configurations of the periodic ``L x L``
Ising model ``H = -sum_<ij> s_i s_j`` (k_B = 1) at temperatures around
``T_c = 2 / ln(1 + sqrt 2) = 2.269`` are generated with the Wolff cluster
algorithm (:mod:`.wolff`, checked against :mod:`.exact`), variational
autoencoders (:mod:`.vae`, dense and convolutional, flax linen) are trained on
them, and synthetic configurations decoded from random latent vectors are
compared with the training data (:mod:`.analysis`). ``distnqs ising-vae``
(:mod:`.cli`) runs the whole study from a TOML file.

Conventions: spins +1/-1 (int8), arrays ``(..., L, L)`` row-major, periodic
boundaries, observables per site ``e = H/N``, ``m = sum_i s_i / N``.
"""

from distnqs.generative.ising.exact import exact_enumeration, exact_observables, exact_transfer_matrix
from distnqs.generative.ising.wolff import (
    energy_per_site,
    magnetization,
    replica_mean_and_error,
    run_wolff,
    wolff_flip,
)

T_C = 2.0 / 0.881373587019543  # 2 / ln(1 + sqrt 2)

__all__ = [
    "T_C",
    "energy_per_site",
    "magnetization",
    "replica_mean_and_error",
    "run_wolff",
    "wolff_flip",
    "exact_enumeration",
    "exact_transfer_matrix",
    "exact_observables",
]
