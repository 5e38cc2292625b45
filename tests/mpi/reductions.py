"""Compute reductions, statistics, gradient and SR directions on this rank's share
of a fixed global sample set; rank 0 writes them to ARGV[1] (.npz).

Run with 1 process (all samples) or under ``mpirun -np R`` (samples split
contiguously by rank): tests/test_mpi_equivalence.py compares the two.
"""

import sys

import distnqs  # noqa: F401
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from distnqs import comm
from distnqs.estimators import energy_gradient, statistics
from distnqs.models import RBM, Ansatz
from distnqs.operators import build_lattice, local_energy, tfim
from distnqs.optim.sr import SR

N_CHAINS, PER_CHAIN, N = 8, 32, 8

lattice = build_lattice({"kind": "chain", "Lx": N, "pbc": True})
H = tfim(lattice, G=1.1)
ansatz = Ansatz(RBM(alpha=1, param_dtype=jnp.complex128, init_std=0.2), N)
params = ansatz.init(jax.random.PRNGKey(0))
# minSR on a real RBM with an odd number of parameters (8 + 8*5 + 5 = 53): the parameter axis is
# padded to split over 2 ranks
odd = Ansatz(RBM(alpha=5 / N, init_std=0.2), N)
odd_params = odd.init(jax.random.PRNGKey(3))
all_samples = jnp.where(jax.random.bernoulli(jax.random.PRNGKey(1), 0.5, (N_CHAINS, PER_CHAIN, N)), 1.0, -1.0)
data = jax.random.normal(jax.random.PRNGKey(2), (N_CHAINS, PER_CHAIN))

R, r = comm.size(), comm.rank()
share = N_CHAINS // R
mine = all_samples[r * share:(r + 1) * share]
my_data = data[r * share:(r + 1) * share]
n_total = N_CHAINS * PER_CHAIN


@jax.jit
def compute(samples, x):
    flat = samples.reshape(-1, N)
    e_loc = local_energy(ansatz.log_psi, params, H, flat)
    stats = statistics(e_loc.reshape(share, PER_CHAIN))
    xs = statistics(x)
    grad = energy_gradient(ansatz.log_psi, params, flat, e_loc, stats.mean, n_total)
    cg = SR(diag_shift=1e-3, solver="cg", cg_tol=1e-14, cg_maxiter=1000).solve(ansatz.log_psi, params, flat, grad, n_total)
    dense = SR(diag_shift=1e-3, solver="dense").solve(ansatz.log_psi, params, flat, grad, n_total)
    minsr, minsr_xSx = SR(diag_shift=1e-3, solver="minsr").solve_with_info(
        ansatz.log_psi, params, flat, grad, n_total, e_loc=e_loc, e_mean=stats.mean
    )
    minsr_holo = SR(diag_shift=1e-3, solver="minsr", minsr_holomorphic=True).solve(
        ansatz.log_psi, params, flat, grad, n_total, e_loc=e_loc, e_mean=stats.mean
    )
    e_odd = local_energy(odd.log_psi, odd_params, H, flat)
    minsr_odd = SR(diag_shift=1e-3, solver="minsr").solve(
        odd.log_psi, odd_params, flat, None, n_total, e_loc=e_odd, e_mean=comm.sum(jnp.sum(e_odd)) / n_total
    )
    return {
        "sum": comm.sum(jnp.sum(x, axis=0)),
        "max": comm.max(jnp.max(x)),
        "mean": comm.mean(x),
        "stats": jnp.stack([xs.mean, xs.error_of_mean, xs.variance, xs.tau_corr, xs.R_hat]),
        "energy": jnp.stack([stats.mean.real, stats.error_of_mean, stats.variance, stats.R_hat]),
        "grad": ravel_pytree(grad)[0],
        "sr_cg": ravel_pytree(cg)[0],
        "sr_dense": ravel_pytree(dense)[0],
        "sr_minsr": ravel_pytree(minsr)[0],
        "sr_minsr_xSx": minsr_xSx,
        "sr_minsr_odd": ravel_pytree(minsr_odd)[0],
        "sr_minsr_holomorphic": ravel_pytree(minsr_holo)[0],
    }


out = jax.device_get(compute(mine, my_data))
if r == 0:
    np.savez(sys.argv[1], n_ranks=R, **out)
comm.barrier()
