r"""Up-front memory estimate of a run, so an absurd size is refused before any work.

Per rank, in bytes (:math:`P` real parameters of :math:`b` bytes, :math:`N`
sites, :math:`n` samples of this rank, :math:`B` = chunk or :math:`n`,
:math:`C` connected configurations per sample, :math:`H \approx P/N` hidden
activations per configuration):

- parameter-sized vectors: parameters, gradient, update, optimizer moments
  (2 more for Adam), conjugate-gradient vectors (5 with SR);
- dense SR: :math:`S` and its Cholesky factor (:math:`2P^2b`) and the
  Jacobian (:math:`2nPb`);
- minSR: the local Jacobian rows and the received parameter slices (:math:`2mP\cdot 8`,
  :math:`m = n` rows, :math:`2n` for complex parameters) and the sample-space matrix with its
  factor (:math:`2M^2\cdot 8`, :math:`M = R\,m`), :mod:`distnqs.optim.minsr`;
- samples: :math:`8nN`;
- local energies: connected configurations :math:`8BCN` and their forward
  pass :math:`2BCHb`, times :math:`|G|` (images :math:`8BC|G|N` and activations) for an ansatz
  symmetrized over a group :math:`G` (``[ansatz] symmetries``); an invariant network
  (``rbm_symm``) has :math:`\alpha|G|` hidden units, the same factor.

It is an estimate (XLA's buffers are not counted one by one): good to an
order of magnitude, which is what refusing a 400x400 lattice needs.
"""

from __future__ import annotations

import os

from distnqs.errors import ConfigError

GiB = 1024**3


def machine_memory() -> int:
    """Physical memory of this machine in bytes."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 0


def parameter_sizes(ansatz) -> tuple[int, int]:
    """(number of real parameters, their bytes), from their shapes alone (nothing is allocated)."""
    import jax
    import numpy as np

    shapes = jax.eval_shape(ansatz.init, jax.random.PRNGKey(0))
    leaves = jax.tree_util.tree_leaves(shapes)
    count = sum(int(np.prod(x.shape, dtype=np.int64)) for x in leaves)
    return count, sum(int(np.prod(x.shape, dtype=np.int64)) * np.dtype(x.dtype).itemsize for x in leaves)


def _connected(cfg: dict, n_sites: int) -> int:
    model = cfg["hamiltonian"].get("model")
    if model == "tfim":
        return n_sites + 1
    if model == "heisenberg":
        return 2 * n_sites + 1
    return 4 * n_sites + 1


def estimate(cfg: dict, lattice, ansatz, n_ranks: int) -> tuple[int, str]:
    """(bytes per rank, the terms in words) of the run ``cfg`` on ``n_ranks`` ranks."""
    n = lattice.n_sites
    p_real, p_bytes = parameter_sizes(ansatz)
    item = max(1, p_bytes // max(1, p_real))
    item = 2 * item if "complex" in str(cfg["ansatz"].get("param_dtype", "")) else item
    opt, sampler, run = cfg["optimizer"], cfg["sampler"], cfg["run"]
    n_local = max(1, -(-int(sampler.get("n_samples", 1024)) // max(1, n_ranks)))
    sr = bool(opt.get("sr", False))
    copies = 3 + (2 if opt.get("kind") == "adam" else 0) + (5 if sr else 0)
    terms = {"parameters": copies * p_bytes}
    if sr and opt.get("solver") == "dense":
        terms["dense S"] = 2 * p_real * p_real * 8 + 2 * n_local * p_real * 8
    if sr and opt.get("solver") == "minsr":
        rows = n_local * (2 if "complex" in str(cfg["ansatz"].get("param_dtype", "")) else 1)
        terms["minSR"] = 2 * rows * p_real * 8 + 2 * (rows * n_ranks) ** 2 * 8
    terms["samples"] = 8 * n_local * n
    batch = min(n_local, run.get("chunk_size") or n_local)
    conn = _connected(cfg, n)
    hidden = max(n, p_real // max(1, n))
    from distnqs.models.symmetric import group_size  # noqa: PLC0415 - light, but only needed here

    images = group_size(lattice, cfg["ansatz"].get("symmetries", "none"), cfg["ansatz"].get("spin_flip", "none"))
    terms["local energies"] = batch * conn * (8 * n + 2 * hidden * item) * images
    total = sum(terms.values())
    words = f"{p_real:.3g} real parameters; " + ", ".join(f"{k} {v / GiB:.3g} GiB" for k, v in terms.items())
    return total, words


def check(cfg: dict, lattice, ansatz, n_ranks: int, ranks_here: int = 1, available: int | None = None) -> int:
    """Refuse a run whose estimate on this machine exceeds its memory; returns the estimate per rank."""
    per_rank, words = estimate(cfg, lattice, ansatz, n_ranks)
    available = machine_memory() if available is None else available
    need = per_rank * max(1, ranks_here)
    if available and need > available:
        model = cfg["ansatz"].get("model", "custom ansatz")
        size = f"{lattice.Lx}x{lattice.Ly} lattice" if lattice.Ly > 1 else f"{lattice.Lx}-site chain"
        alpha = f", alpha {cfg['ansatz']['alpha']}" if "alpha" in cfg["ansatz"] else ""
        ranks = f" on {ranks_here} ranks" if ranks_here > 1 else ""
        raise ConfigError(
            f"estimated memory {need / GiB:.0f} GiB{ranks} exceeds the {available / GiB:.0f} GiB of this machine "
            f"({size}, {model}{alpha}: {words}); make the lattice, the ansatz or n_samples smaller, or set [run] chunk_size"
        )
    return per_rank


def refuse_above_machine(need: int, what: str, available: int | None = None) -> int:
    """Refuse a job whose estimated memory ``need`` (bytes; ``what`` names its parts) exceeds this
    machine's physical memory; returns ``need``. The generative CLIs use it for their data sets."""
    available = machine_memory() if available is None else available
    if available and need > available:
        raise ConfigError(f"estimated memory {need / GiB:.1f} GiB exceeds the {available / GiB:.0f} GiB of this machine ({what})")
    return need
