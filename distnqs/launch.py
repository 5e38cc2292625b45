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
# SLURM_STEP_NUM_TASKS (set by srun for its step) before SLURM_NTASKS (the allocation's count).
_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS")
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


def launcher_size_source() -> tuple[str | None, int]:
    """``(variable, count)``: which launcher variable gave :func:`launcher_size` (``None``, 1 without one)."""
    for name in _SIZE_VARS:
        value = os.environ.get(name)
        if value is not None:
            try:
                return name, int(value.split("(")[0])
            except ValueError:
                continue
    return None, 1


def job_cpu_count(default: int | None = None) -> int:
    """Cores this job may use on this node: the cgroup's cpuset, else Slurm's count, else the machine's.

    A launcher that binds each task (``srun --cpu-bind``, ``mpirun -bind-to core``) narrows
    the *affinity* of each process but not its cgroup, so this count is the node's share of
    the whole job, not of one rank.
    """
    for path in ("/sys/fs/cgroup/cpuset.cpus.effective", "/sys/fs/cgroup/cpuset/cpuset.effective_cpus"):
        try:
            text = open(path).read().strip()
        except OSError:
            continue
        if text:
            return len(parse_cpu_list(text))
    slurm = os.environ.get("SLURM_CPUS_ON_NODE")
    if slurm and slurm.isdigit():
        return int(slurm)
    return default or os.cpu_count() or 1


def parse_cpu_list(text: str) -> list[int]:
    """``"0-3,8,10-11"`` -> ``[0, 1, 2, 3, 8, 10, 11]`` (Linux cpu-list format)."""
    cores = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cores.extend(range(int(lo), int(hi or lo) + 1))
    return cores


def choose_cores(mask, local_rank: int, local_size: int, job_cores: int) -> tuple[list[int], bool]:
    """The cores one rank should run on, and whether the launcher's binding was kept.

    ``mask`` is the affinity the process started with, ``job_cores`` the number of cores
    the job may use on this node (:func:`job_cpu_count`). When the launcher already bound
    this rank to at most its share (``len(mask) * local_size <= job_cores``), that binding
    is kept: splitting it again would give each rank a fraction of its own cores. Otherwise
    (no binding: every rank sees the whole node) rank ``r`` takes the ``r``-th of
    ``local_size`` equal slices of the mask; with more ranks than cores, one core each,
    round robin.
    """
    cores = sorted(mask)
    local_size = max(1, local_size)
    if not cores:
        return [], False
    if len(cores) * local_size <= job_cores:
        return cores, True
    per_rank = len(cores) // local_size
    if per_rank == 0:
        return [cores[local_rank % len(cores)]], False
    return cores[local_rank * per_rank:(local_rank + 1) * per_rank], False


def configure_process() -> None:
    """Pin this rank to its share of the node's cores and size XLA's pools.

    Idempotent; a no-op for a single process or when ``DISTNQS_NO_PINNING``
    is set. Must run before the first ``import jax``.

    XLA's CPU runtime sizes its thread pools from the number of schedulable
    cores (``sched_getaffinity``), so the affinity is what limits its threads;
    ``--xla_cpu_multi_thread_eigen=false`` in addition keeps a one-core rank's
    Eigen kernels (matmul, convolution) single-threaded. (``intra_op_parallelism_threads``
    is a TensorFlow session option, not an XLA flag.)
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
        mask = os.sched_getaffinity(0)
    except AttributeError:  # not Linux
        return
    mine, kept = choose_cores(mask, local_rank, local_size, job_cpu_count(len(mask)))
    os.environ["DISTNQS_CPU_BINDING"] = "launcher" if kept else "distnqs"
    if not kept:
        try:
            os.sched_setaffinity(0, mine)
        except OSError:
            os.environ["DISTNQS_CPU_BINDING"] = "none"
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags and len(mine) == 1:
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(len(mine)))
