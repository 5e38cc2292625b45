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
    """Sokal-windowed integrated autocorrelation time (minus 1/2) of Re x.

    ``x``: ``(..., chains, n)``; leading axes are independent observables.
    """
    n = x.shape[-1]
    y = jnp.real(x) - jnp.real(mean)[..., None, None]
    f = jnp.fft.rfft(y, n=2 * n, axis=-1)
    acov = jnp.fft.irfft(f * jnp.conj(f), axis=-1)[..., :n] / n  # (..., chains, n) biased autocovariance
    acov = comm.sum(jnp.sum(acov, axis=-2)) / n_chains_total
    a0 = acov[..., :1]
    rho = acov / jnp.where(a0 > 0, a0, 1.0)
    tau_int = 0.5 + jnp.cumsum(rho.at[..., 0].set(0.0), axis=-1)  # tau_int(W) for W = 0..n-1
    window_ok = jnp.arange(n) >= 5.0 * tau_int
    W = jnp.where(jnp.any(window_ok, axis=-1), jnp.argmax(window_ok, axis=-1), n - 1)
    tau_W = jnp.take_along_axis(tau_int, W[..., None], axis=-1)[..., 0]
    return jnp.maximum(tau_W - 0.5, 0.0)


def _split_rhat(x, n_chains_total):
    n = x.shape[-1]
    half = n // 2
    xs = jnp.real(jnp.concatenate([x[..., :half], x[..., half:2 * half]], axis=-2))  # (..., 2 chains, half)
    m = 2 * n_chains_total
    means = jnp.mean(xs, axis=-1)
    within = jnp.var(xs, axis=-1, ddof=1)
    grand = comm.sum(jnp.sum(means, axis=-1)) / m
    B_over_n = comm.sum(jnp.sum((means - grand[..., None]) ** 2, axis=-1)) / (m - 1)
    W = comm.sum(jnp.sum(within, axis=-1)) / m
    var_plus = (half - 1) / half * W + B_over_n
    return jnp.sqrt(var_plus / jnp.where(W > 0, W, 1.0))


def _statistics(x) -> Stats:
    """:class:`Stats` of ``x`` ``(..., n_chains, n_per_chain)``, one per leading index."""
    x = x.astype(jnp.promote_types(x.dtype, jnp.float64))
    n_local_chains, n = x.shape[-2:]
    n_chains_total = n_local_chains * comm.size()
    n_total = n_chains_total * n
    mean = comm.sum(jnp.sum(x, axis=(-2, -1))) / n_total
    variance = comm.sum(jnp.sum(jnp.abs(x - mean[..., None, None]) ** 2, axis=(-2, -1))) / n_total
    if n >= 4:
        tau = _autocorrelation_time(x, mean, n_chains_total)
        r_hat = _split_rhat(x, n_chains_total)
    else:
        tau = jnp.zeros(x.shape[:-2], jnp.float64)
        r_hat = jnp.full(x.shape[:-2], jnp.nan)
    error = jnp.sqrt(variance * (1.0 + 2.0 * tau) / n_total)
    return Stats(mean, error, variance, tau, r_hat)


def statistics(x) -> Stats:
    """:class:`Stats` of the samples ``x`` (``(n_chains, n_per_chain)`` on this rank)."""
    x = jnp.asarray(x)
    if x.ndim == 1:
        x = x[:, None]
    return _statistics(x)


def statistics_components(x) -> Stats:
    """:class:`Stats` of each component of vector samples ``x`` ``(n_chains, n_per_chain, K)``.

    The same estimates as :func:`statistics` applied to ``x[..., k]`` for every
    ``k`` (every field of the result has shape ``(K,)``), with one allreduce per
    quantity for all components together.
    """
    x = jnp.asarray(x)
    return _statistics(jnp.moveaxis(x, -1, 0))


def combine_batches(batches) -> Stats:
    r"""One :class:`Stats` from the statistics of ``K`` independent batches (host arrays).

    Mean :math:`\bar x = \frac1K\sum_k \bar x_k`, error :math:`\sqrt{\sum_k \epsilon_k^2}/K`,
    mean variance and :math:`\tau`, largest :math:`\hat R`; component-wise for vector statistics.
    """
    import numpy as np

    return Stats(
        mean=np.mean([b.mean for b in batches], axis=0),
        error_of_mean=np.sqrt(np.sum([b.error_of_mean**2 for b in batches], axis=0)) / len(batches),
        variance=np.mean([b.variance for b in batches], axis=0),
        tau_corr=np.mean([b.tau_corr for b in batches], axis=0),
        R_hat=np.max([b.R_hat for b in batches], axis=0),
    )
