"""Generative reconstruction of TFIM chain ground states from IC-POVM data.

Method of Luchnikov, Ryzhov, Stas, Filippov, Ouerdane, "Variational
autoencoder reconstruction of complex many-body physics", Entropy 21, 1091
(2019): the ground state of H = -sum sz_i sz_{i+1} - h sum sx_i (open chain)
becomes the probability distribution of tetrahedral POVM outcomes, a
conditional VAE learns it for all fields h at once, and observables are
estimated from the VAE's samples.

- :mod:`.povm`: tetrahedral POVM, overlap matrix, dual frame, estimators.
- :mod:`.data`: ED (scipy, even sector) and DMRG (tenpy) ground states,
  exact POVM sampling from state vectors and MPS, HDF5 data sets.
- :mod:`.cvae`: flax conditional VAE (site-factorized or autoregressive
  MADE decoder), ELBO/IWAE training, sampling, model distribution (prior
  Monte Carlo or encoder importance sampling), Gumbel-softmax susceptibility.
- :mod:`.observables`: exact and sample-estimated observables, classical
  fidelity, Renyi-2 entropy from samples.
- :mod:`.cli`: ``distnqs tomography CONFIG --outdir D``.

Conventions: Pauli matrices; basis index 0 = spin up (sz = +1); sites
0..N-1 left to right, site 0 most significant in flat indices.
"""
