"""Generative models of spin data (independent of the VMC engine).

- :mod:`distnqs.generative.tomography`: conditional VAE on tetrahedral IC-POVM
  measurement outcomes of TFIM chain ground states (Luchnikov et al. 2019).
- :mod:`distnqs.generative.ising`: Wolff cluster Monte Carlo of the classical
  2D Ising model and VAEs trained on its configurations.
"""
