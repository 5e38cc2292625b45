r"""Monte Carlo statistics over all chains of all ranks (jit-compatible).

Input: this rank's values ``x`` of shape ``(n_chains, n_per_chain)``; every
sum runs over all ranks (:mod:`distnqs.comm`). With :math:`N` samples in all,

- mean :math:`\bar x = \frac1N\sum x`, variance :math:`\sigma^2 = \frac1N\sum|x-\bar x|^2`;
- integrated autocorrelation time from the chain-averaged normalized
  autocorrelation :math:`\rho(t)` of :math:`\mathrm{Re}\,x` (FFT per chain),
  :math:`\tau_\mathrm{int} = \tfrac12 + \sum_{t=1}^{W}\rho(t)` with Sokal's
  window (smallest :math:`W \ge 5\,\tau_\mathrm{int}(W)`); reported as
  :math:`\tau = \tau_\mathrm{int} - \tfrac12` (0 for independent samples);
- error of the mean :math:`\sqrt{\sigma^2 (1 + 2\tau)/N}`;
- split :math:`\hat R` (Gelman-Rubin over the two halves of every chain):
  :math:`\hat R = \sqrt{(\tfrac{n-1}{n}W + B/n)/W}` with :math:`W` the mean
  within-half variance and :math:`B/n` the variance of the half means.

With one sample per chain (direct sampling) :math:`\tau = 0` and :math:`\hat R`
is NaN.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from distnqs import comm


class Stats(NamedTuple):
    mean: jax.Array
    error_of_mean: jax.Array
    variance: jax.Array
    tau_corr: jax.Array
    R_hat: jax.Array

    def to_dict(self) -> dict:
        mean = complex(self.mean)
        return {
            "mean": mean.real,
            "mean_imag": mean.imag,
            "error": float(self.error_of_mean),
            "variance": float(self.variance),
            "tau_corr": float(self.tau_corr),
            "R_hat": float(self.R_hat),
        }


def _autocorrelation_time(x, mean, n_chains_total):
    """Sokal-windowed integrated autocorrelation time (minus 1/2) of Re x."""
    n = x.shape[1]
    y = jnp.real(x) - jnp.real(mean)
    f = jnp.fft.rfft(y, n=2 * n, axis=1)
    acov = jnp.fft.irfft(f * jnp.conj(f), axis=1)[:, :n] / n  # (chains, n) biased autocovariance
    acov = comm.sum(jnp.sum(acov, axis=0)) / n_chains_total
    rho = acov / jnp.where(acov[0] > 0, acov[0], 1.0)
    tau_int = 0.5 + jnp.cumsum(rho.at[0].set(0.0))  # tau_int(W) for W = 0..n-1
    window_ok = jnp.arange(n) >= 5.0 * tau_int
    W = jnp.where(jnp.any(window_ok), jnp.argmax(window_ok), n - 1)
    return jnp.maximum(tau_int[W] - 0.5, 0.0)


def _split_rhat(x, n_chains_total):
    n_local, n = x.shape
    half = n // 2
    xs = jnp.real(jnp.concatenate([x[:, :half], x[:, half:2 * half]], axis=0))  # (2 chains, half)
    m = 2 * n_chains_total
    means = jnp.mean(xs, axis=1)
    within = jnp.var(xs, axis=1, ddof=1)
    grand = comm.sum(jnp.sum(means)) / m
    B_over_n = comm.sum(jnp.sum((means - grand) ** 2)) / (m - 1)
    W = comm.sum(jnp.sum(within)) / m
    var_plus = (half - 1) / half * W + B_over_n
    return jnp.sqrt(var_plus / jnp.where(W > 0, W, 1.0))


def statistics(x) -> Stats:
    """:class:`Stats` of the samples ``x`` (``(n_chains, n_per_chain)`` on this rank)."""
    x = jnp.asarray(x)
    if x.ndim == 1:
        x = x[:, None]
    x = x.astype(jnp.promote_types(x.dtype, jnp.float64))
    n_local_chains, n = x.shape
    n_chains_total = n_local_chains * comm.size()
    n_total = n_chains_total * n
    mean = comm.sum(jnp.sum(x)) / n_total
    variance = comm.sum(jnp.sum(jnp.abs(x - mean) ** 2)) / n_total
    if n >= 4:
        tau = _autocorrelation_time(x, mean, n_chains_total)
        r_hat = _split_rhat(x, n_chains_total)
    else:
        tau = jnp.zeros((), jnp.float64)
        r_hat = jnp.full((), jnp.nan)
    error = jnp.sqrt(variance * (1.0 + 2.0 * tau) / n_total)
    return Stats(mean, error, variance, tau, r_hat)
