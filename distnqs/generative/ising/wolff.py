"""Vectorized Wolff cluster Monte Carlo of the classical 2D Ising model.

Conventions (used throughout :mod:`distnqs.generative.ising`):

- spins ``s_i = +1 / -1`` stored as ``int8`` arrays of shape ``(..., L, L)``,
  site ``(r, c)`` has the row-major index ``i = r * L + c``;
- periodic ``L x L`` square lattice, ``L >= 3`` (so that every nearest-neighbour
  bond is counted once);
- ``H = -sum_<ij> s_i s_j`` (J = 1, no field), ``k_B = 1``, Boltzmann weight
  ``exp(-H / T)``;
- observables per site: ``e = H / N`` and ``m = (1/N) sum_i s_i`` with
  ``N = L * L``.

Algorithm (Wolff 1989) in the "activate every bond once" form, which is the
same Markov chain as the usual stack-based growth but vectorizes over many
independent replicas: for every replica

1. each bond ``<ij>`` with ``s_i = s_j`` is activated independently with
   probability ``p_add = 1 - exp(-2 / T)`` (one 32-bit uniform per bond, so
   every bond is tested exactly once per cluster build);
2. a seed site is drawn uniformly; its connected component through active
   bonds is found by iterated frontier expansion
   ``C <- C | (neighbours of C through active bonds)`` until nothing changes;
3. all spins of the component are flipped (acceptance probability 1).

The bonds outside the seed's component are never looked at, so the step is
exactly the single-cluster Wolff update and satisfies detailed balance with
respect to ``exp(-H / T)``. Many replicas (axis 0) run in lock-step inside one
jitted XLA program.

One "sweep" is ``N / <|C|>`` cluster flips (``<|C|>`` the mean cluster size),
i.e. on average every spin is touched once; samples are recorded every
``sweeps_per_sample`` sweeps after ``equilibration_sweeps`` sweeps.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "bond_probability",
    "bond_threshold",
    "energy_per_site",
    "magnetization",
    "random_spins",
    "wolff_flip",
    "wolff_flip_jit",
    "wolff_flips",
    "wolff_samples",
    "WolffResult",
    "run_wolff",
    "replica_mean_and_error",
]


# ----------------------------------------------------------------------------
# observables (numpy, any leading batch shape)
# ----------------------------------------------------------------------------

def energy_per_site(spins) -> np.ndarray:
    """Energy per site ``e = -(1/N) sum_<ij> s_i s_j`` of periodic ``L x L`` configurations.

    ``spins``: array ``(..., L, L)`` of +1/-1 (any integer or float dtype).
    Each nearest-neighbour bond is counted once (right and down neighbour of
    every site, periodic wrap), which requires ``L >= 3``. Returns float64
    array of shape ``(...)``.
    """
    s = np.asarray(spins)
    L1, L2 = s.shape[-2], s.shape[-1]
    if min(L1, L2) < 3:
        raise ValueError(f"energy_per_site needs L >= 3 for periodic bonds, got {L1}x{L2}")
    s = s.astype(np.int16, copy=False)
    bonds = (s * np.roll(s, -1, axis=-1)).sum(axis=(-2, -1), dtype=np.int64)
    bonds += (s * np.roll(s, -1, axis=-2)).sum(axis=(-2, -1), dtype=np.int64)
    return -bonds.astype(np.float64) / (L1 * L2)


def magnetization(spins) -> np.ndarray:
    """Magnetization per site ``m = (1/N) sum_i s_i`` of ``(..., L, L)`` configurations (float64)."""
    s = np.asarray(spins)
    return s.sum(axis=(-2, -1), dtype=np.int64).astype(np.float64) / (s.shape[-2] * s.shape[-1])


def replica_mean_and_error(values: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of a Monte Carlo estimate from independent replicas.

    ``values``: array ``(S, R)``: ``S`` successive (possibly correlated)
    measurements in each of ``R`` independent Markov chains. The estimate is
    ``mean = (1/(S R)) sum values`` with error ``std_r(mean_s values) / sqrt(R)``
    (sample standard deviation over the replica means), which accounts for the
    autocorrelation inside each chain. Needs ``R >= 2``.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] < 2:
        raise ValueError("replica_mean_and_error needs values of shape (S, R) with R >= 2")
    per_replica = v.mean(axis=0)
    return float(per_replica.mean()), float(per_replica.std(ddof=1) / math.sqrt(v.shape[1]))


# ----------------------------------------------------------------------------
# Wolff update (jax)
# ----------------------------------------------------------------------------

def bond_probability(T: float) -> float:
    """Wolff bond activation probability ``p_add = 1 - exp(-2 J / T)`` (J = 1, k_B = 1)."""
    if not T > 0:
        raise ValueError(f"temperature must be positive, got {T}")
    return -math.expm1(-2.0 / T)


def bond_threshold(T: float) -> np.uint32:
    """Integer threshold ``t = round(p_add * 2^32)``: a bond is active iff ``u < t`` for a uniform 32-bit ``u``.

    ``P(u < t) = t / 2^32`` equals ``p_add`` to within ``2^-33``.
    """
    t = int(round(bond_probability(T) * 2.0**32))
    return np.uint32(min(max(t, 0), 2**32 - 1))


def random_spins(key, n_replicas: int, L: int) -> jax.Array:
    """Infinite-temperature start: independent uniform +1/-1 spins, ``(n_replicas, L, L)`` int8."""
    bits = jax.random.bernoulli(key, 0.5, (n_replicas, L, L))
    return jnp.where(bits, 1, -1).astype(jnp.int8)


def wolff_flip(spins: jax.Array, key, threshold) -> tuple[jax.Array, jax.Array]:
    """One single-cluster Wolff update in every replica (pure function).

    ``spins``: ``(R, L, L)`` int8 of +1/-1; ``threshold``: uint32 from
    :func:`bond_threshold`. Bond ``(r,c)-(r,c+1)`` ("right") and
    ``(r,c)-(r+1,c)`` ("down", periodic) is active iff the two spins are equal
    and its own uniform ``u < threshold``. The component of a uniformly drawn
    seed site through active bonds is flipped. Returns the new spins and the
    cluster size of every replica ``(R,)`` int32.
    """
    R, L, _ = spins.shape
    k_bonds, k_seed = jax.random.split(key)
    u = jax.random.bits(k_bonds, (2, R, L, L), jnp.uint32)
    right = (spins == jnp.roll(spins, -1, axis=2)) & (u[0] < threshold)
    down = (spins == jnp.roll(spins, -1, axis=1)) & (u[1] < threshold)
    seed = jax.random.randint(k_seed, (R,), 0, L * L)
    cluster = (jnp.arange(L * L)[None, :] == seed[:, None]).reshape(R, L, L)

    def grow(c):
        # (r,c) joins if its right neighbour is in C via its right bond, etc.
        return (c
                | (jnp.roll(c, -1, axis=2) & right)
                | jnp.roll(c & right, 1, axis=2)
                | (jnp.roll(c, -1, axis=1) & down)
                | jnp.roll(c & down, 1, axis=1))

    def body(state):
        c, _ = state
        new = grow(c)
        return new, jnp.any(new != c)

    cluster, _ = jax.lax.while_loop(lambda st: st[1], body, (cluster, jnp.array(True)))
    flipped = jnp.where(cluster, -spins, spins).astype(jnp.int8)
    return flipped, cluster.sum(axis=(1, 2), dtype=jnp.int32)


def wolff_flips(spins: jax.Array, key, threshold, n_flips) -> tuple[jax.Array, jax.Array]:
    """``n_flips`` successive Wolff updates (traced count); returns spins and the summed cluster sizes ``(R,)``."""
    def body(i, state):
        s, total = state
        s, size = wolff_flip(s, jax.random.fold_in(key, i), threshold)
        return s, total + size
    return jax.lax.fori_loop(0, n_flips, body, (spins, jnp.zeros(spins.shape[0], jnp.int32)))


wolff_flip_jit = jax.jit(wolff_flip)


@partial(jax.jit, static_argnames=("n_samples",))
def wolff_samples(spins: jax.Array, key, threshold, n_flips, n_samples: int):
    """Record ``n_samples`` configurations per replica, ``n_flips`` Wolff updates apart.

    Returns ``(final spins, samples (n_samples, R, L, L) int8, summed cluster sizes (n_samples, R))``.
    """
    keys = jax.random.split(key, n_samples)

    def step(s, k):
        s, total = wolff_flips(s, k, threshold, n_flips)
        return s, (s, total)

    spins, (samples, totals) = jax.lax.scan(step, spins, keys)
    return spins, samples, totals


@dataclass
class WolffResult:
    """Output of :func:`run_wolff`.

    ``spins``: ``(S, R, L, L)`` int8 (sample-major: sample ``s`` of replica ``r``);
    ``flips_per_sample``: Wolff updates between recorded samples;
    ``mean_cluster_size``: ``<|C|>`` measured over the production run;
    ``seconds``: wall time of equilibration + production, including the
    jit compilation on first use of a shape (the honest end-to-end time).
    """

    T: float
    L: int
    spins: np.ndarray
    flips_per_sample: int
    equilibration_flips: int
    mean_cluster_size: float
    seconds: float

    @property
    def n_configs(self) -> int:
        return int(self.spins.shape[0] * self.spins.shape[1])

    @property
    def configs(self) -> np.ndarray:
        """All configurations, ``(S * R, L, L)`` int8 (row ``s * R + r``)."""
        S, R, L, _ = self.spins.shape
        return self.spins.reshape(S * R, L, L)

    @property
    def configs_per_second(self) -> float:
        return self.n_configs / self.seconds if self.seconds > 0 else float("inf")


def run_wolff(key, L: int, T: float, n_configs: int, n_replicas: int,
              equilibration_sweeps: float = 20.0, sweeps_per_sample: float = 1.0,
              chunk_samples: int = 50,
              progress: Callable[[int, int], None] | None = None) -> WolffResult:
    """Equilibrate ``n_replicas`` independent chains at temperature ``T`` and record ``n_configs`` configurations.

    Starts from random spins (``T = inf``). Equilibration runs one-sweep
    blocks (``max(1, round(N / <|C|>))`` flips with the running estimate of
    the mean cluster size; the first call uses single flips), ``chunk_samples``
    blocks per call, until ``sum |C| >= equilibration_sweeps * N`` per
    replica on average. Production records ``n_configs / n_replicas`` samples
    per replica, ``flips_per_sample = max(1, round(sweeps_per_sample * N / <|C|>))``
    updates apart (``<|C|>`` from the second half of equilibration).
    ``progress(done, total)`` is called after every chunk of samples.
    """
    if L < 3:
        raise ValueError(f"L must be >= 3, got {L}")
    if n_replicas < 2 or n_configs % n_replicas:
        raise ValueError(f"n_configs ({n_configs}) must be a multiple of n_replicas ({n_replicas}) >= 2")
    N = L * L
    thr = jnp.uint32(bond_threshold(T))
    k_init, k_eq, k_prod = jax.random.split(key, 3)
    t0 = time.perf_counter()
    spins = random_spins(k_init, n_replicas, L)

    # --- equilibration: calls of m one-sweep blocks (the production kernel, so one compilation) ---
    n_samples = n_configs // n_replicas
    m = max(1, min(chunk_samples, n_samples))
    swept, n_eq_flips, block, mean_c = 0.0, 0, 1, float(N)
    recent_sizes, recent_flips, i = 0.0, 0, 0
    while swept < equilibration_sweeps or i == 0:
        spins, _, tot = wolff_samples(spins, jax.random.fold_in(k_eq, i), thr, block, m)
        sizes = np.asarray(tot, dtype=np.float64).mean(axis=1)  # summed cluster size per block
        swept += float(sizes.sum()) / N
        n_eq_flips += block * m
        i += 1
        if swept >= 0.5 * equilibration_sweeps:
            recent_sizes += float(sizes.sum())
            recent_flips += block * m
        mean_c = (recent_sizes / recent_flips) if recent_flips else float(sizes.sum()) / (block * m)
        block = max(1, int(round(N / max(mean_c, 1.0))))
    flips = max(1, int(round(sweeps_per_sample * N / max(mean_c, 1.0))))

    # --- production ---
    # one compiled shape; the last chunk is cut
    chunks, totals, done, c = [], [], 0, 0
    while done < n_samples:
        spins, samples, tot = wolff_samples(spins, jax.random.fold_in(k_prod, c), thr, flips, m)
        keep = min(m, n_samples - done)
        chunks.append(np.asarray(samples)[:keep])
        totals.append(np.asarray(tot)[:keep])
        done += keep
        c += 1
        if progress is not None:
            progress(done, n_samples)
    seconds = time.perf_counter() - t0
    all_spins = np.concatenate(chunks, axis=0)
    mean_cluster = float(np.concatenate(totals).sum(dtype=np.float64) / (n_samples * n_replicas * flips))
    return WolffResult(T=float(T), L=L, spins=all_spins, flips_per_sample=flips,
                       equilibration_flips=n_eq_flips, mean_cluster_size=mean_cluster,
                       seconds=seconds)
