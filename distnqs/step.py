r"""One VMC optimization step as a single jitted function.

.. code-block:: text

    key_t  = fold_in(fold_in(PRNGKey(seed), rank), t)
    s      ~ |psi_theta|^2                      (this rank's chains / batch)
    E_loc  = sum_s' H_ss' psi(s')/psi(s)        (chunked; from look-up tables when available)
    stats  = mean, error, variance, tau, R_hat  (allreduce)
    g      = 2 Re <(E_loc - E)^* O>             (allreduce)
    x      = (S + eps)^{-1} g                   (SR, optional; allreduce per S.v; minSR: from E_loc)
    theta <- optax_update(x)                    (unless the step guard objects: distnqs.optim.guard)

The energy statistics returned are those of the parameters *before* the
update (the samples were drawn from them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from distnqs import comm
from distnqs.estimators import energy_gradient, statistics
from distnqs.operators import local_energy
from distnqs.optim.guard import guarded_update


@dataclass(frozen=True, eq=False)
class VMCStep:
    ansatz: Any
    hamiltonian: Any
    sampler: Any
    optimizer: Any
    seed: int
    chunk_size: int | None = None
    magnetization: bool = True
    fast_update: Any = None  # the ansatz's look-up tables for local energies (None: forward passes)
    observables: Any = None  # distnqs.observables.ObservableSet: extra observables of the final evaluation only

    @property
    def n_samples_local(self) -> int:
        return self.sampler.n_chains * self.sampler.n_samples_per_chain

    @property
    def n_samples_total(self) -> int:
        return self.n_samples_local * comm.size()

    def estimate(self, params, samples):
        """Energy (and magnetization) statistics of ``samples`` ``(chains, per_chain, N)``."""
        log_psi = self.ansatz.log_psi
        nc, ns, n = samples.shape
        flat = samples.reshape(nc * ns, n)
        lp = log_psi(params, flat)
        e_loc = local_energy(log_psi, params, self.hamiltonian, flat, lp, self.chunk_size, self.fast_update)
        metrics = {"energy": statistics(e_loc.reshape(nc, ns))}
        if self.magnetization:
            m = jnp.sum(flat, axis=-1) / n  # m = sum_i s_i / N  (s = +-1, i.e. sigma^z eigenvalues)
            metrics["m"] = statistics(m.reshape(nc, ns))
            metrics["abs_m"] = statistics(jnp.abs(m).reshape(nc, ns))
            metrics["m2"] = statistics((m**2).reshape(nc, ns))
        return flat, e_loc, metrics

    def __call__(self, params, opt_state, sampler_state, step):
        """One step; ``opt_state`` is ``(optax state, GuardState)``.

        ``metrics["guard"]`` reports the step guard's decision
        (:func:`distnqs.optim.guard.guarded_update`): when a quantity is not
        finite, or the variance alarm or the step-size cap rejects the step,
        the parameters and optax state come back unchanged.
        """
        tx_state, guard_state = opt_state
        key = comm.step_key(self.seed, step)
        samples, sampler_state = self.sampler.sample(self.ansatz.log_psi, params, sampler_state, key)
        flat, e_loc, metrics = self.estimate(params, samples)
        n_total = self.n_samples_total
        energy = metrics["energy"]
        grad = energy_gradient(self.ansatz.log_psi, params, flat, e_loc, energy.mean, n_total, self.chunk_size)
        learning_rate = jnp.asarray(self.optimizer.schedule(step), jnp.float64) * guard_state.lr_scale
        if self.optimizer.sr is not None:
            direction, xSx = self.optimizer.sr.solve_with_info(
                self.ansatz.log_psi, params, flat, grad, n_total, step, guard_state.shift_scale,
                e_loc=e_loc, e_mean=energy.mean,  # used by the minsr solver only
            )
            fs_length = learning_rate**2 * xSx  # Fubini-Study length of -eta x
        else:
            direction, fs_length = grad, jnp.asarray(jnp.nan, jnp.float64)
        updates, new_tx_state = self.optimizer.tx.update(direction, tx_state, params)
        updates = jax.tree_util.tree_map(lambda u: u * guard_state.lr_scale.astype(u.real.dtype), updates)
        params, accept, guard_state, report = guarded_update(
            self.optimizer.guard, guard_state, params, updates,
            energy=energy.mean, variance=energy.variance, grad=grad, direction=direction, fs_length=fs_length,
        )
        tx_state = jax.tree_util.tree_map(lambda new, old: jnp.where(accept, new, old), new_tx_state, tx_state)
        acc = comm.sum(jnp.stack([sampler_state.n_accepted, sampler_state.n_proposed]).astype(jnp.float64))
        metrics["acceptance"] = acc[0] / jnp.maximum(acc[1], 1.0)
        metrics["learning_rate"] = learning_rate
        metrics["guard"] = report
        return params, (tx_state, guard_state), sampler_state, metrics

    def evaluate(self, params, sampler_state, index):
        """Sample and estimate with fixed ``params`` (no update): the final evaluation.

        Its keys are ``fold_in(step_key(seed, index), 1)``, disjoint from the
        training steps' keys. With ``observables`` (``[observables]`` sx, correlations,
        structure_factor) their statistics are added, from the same samples.
        """
        key = jax.random.fold_in(comm.step_key(self.seed, index), 1)
        samples, sampler_state = self.sampler.sample(self.ansatz.log_psi, params, sampler_state, key)
        _, _, metrics = self.estimate(params, samples)
        if self.observables is not None:
            metrics.update(self.observables.estimate(self.ansatz.log_psi, params, samples))
        return sampler_state, metrics

    def jit(self):
        return jax.jit(self.__call__)
