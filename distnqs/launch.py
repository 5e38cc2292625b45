"""Process set-up that must happen before jax is imported.

When a job is started by ``mpirun``/``srun`` with several ranks on one node,
every rank's XLA CPU runtime would by default spawn one thread per core and
the ranks would oversubscribe the machine. :func:`configure_process` reads the
launcher's environment (no MPI call: only :mod:`distnqs.comm` touches MPI),
gives each local rank its own share of the cores (CPU affinity) and limits
XLA's thread pool to it. On a GPU node each rank sees only its own GPU
(``CUDA_VISIBLE_DEVICES`` = local rank), unless the user set it already.
"""

from __future__ import annotations

import os

_RANK_VARS = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID", "MPI_LOCALRANKID")
_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS")
_LOCAL_RANK_VARS = ("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID", "PMI_RANK")
_LOCAL_SIZE_VARS = ("OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE", "PMI_SIZE")


def _first_int(names, default):
    for name in names:
        value = os.environ.get(name)
        if value is not None:
            try:
                return int(value.split("(")[0])
            except ValueError:
                continue
    return default


def launcher_size() -> int:
    """Number of ranks the launcher started (1 without a launcher)."""
    return _first_int(_SIZE_VARS, 1)


def configure_process() -> None:
    """Pin this rank to its share of the node's cores and size XLA's pools.

    Idempotent; a no-op for a single process or when ``DISTNQS_NO_PINNING``
    is set. Must run before the first ``import jax``.
    """
    os.environ.setdefault("JAX_ENABLE_X64", "1")
    if os.environ.get("DISTNQS_NO_PINNING") or os.environ.get("_DISTNQS_CONFIGURED"):
        return
    os.environ["_DISTNQS_CONFIGURED"] = "1"
    if launcher_size() <= 1:
        return
    local_rank = _first_int(_LOCAL_RANK_VARS, 0)
    local_size = max(1, _first_int(_LOCAL_SIZE_VARS, 1))
    local_rank %= local_size
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", str(local_rank))
    try:
        cores = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return
    per_rank = max(1, len(cores) // local_size)
    mine = cores[local_rank * per_rank:(local_rank + 1) * per_rank] or [cores[local_rank % len(cores)]]
    try:
        os.sched_setaffinity(0, mine)
    except OSError:
        pass
    flags = os.environ.get("XLA_FLAGS", "")
    if "intra_op_parallelism_threads" not in flags:
        extra = f"--xla_cpu_multi_thread_eigen={'true' if len(mine) > 1 else 'false'} intra_op_parallelism_threads={len(mine)}"
        os.environ["XLA_FLAGS"] = (flags + " " + extra).strip()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(len(mine)))
