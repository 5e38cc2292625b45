r"""The only module that touches MPI (mpi4py / mpi4jax).

SPMD model: every rank holds the full parameters and draws its own samples;
quantities depending on all samples are sums over ranks,

.. math::  \bar x = \frac{1}{N_\mathrm{tot}} \sum_{r=0}^{R-1} \sum_{i \in r} x_i ,

computed with an mpi4jax ``allreduce`` *inside* jit. Without ``mpirun`` (or
without mpi4py/mpi4jax installed at all) the same functions are identities, so
a laptop or a single-GPU machine with only jax runs unchanged.

The communicator is a clone of ``COMM_WORLD`` (``Comm.Dup``) so that our
collectives never interleave with a user's own.
"""

from __future__ import annotations

import functools
import os
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


@functools.lru_cache(maxsize=1)
def _mpi():
    """Import mpi4py lazily; ``None`` when it is missing or a single process runs."""
    if os.environ.get("DISTNQS_NO_MPI"):
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    return MPI


@dataclass(frozen=True)
class Comm:
    """Rank/size and a private communicator (``None`` for a lone process)."""

    rank: int
    size: int
    mpi_comm: Any = None

    @property
    def is_root(self) -> bool:
        return self.rank == 0


@functools.lru_cache(maxsize=1)
def world() -> Comm:
    """The job's communicator: a ``Dup`` of ``COMM_WORLD``, or a one-rank stub."""
    MPI = _mpi()
    if MPI is None:
        return Comm(0, 1, None)
    base = MPI.COMM_WORLD
    if base.Get_size() == 1:
        return Comm(0, 1, None)
    try:
        import mpi4jax  # noqa: F401  (fail early with a clear message)
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError("running on several MPI ranks needs mpi4jax (see README: make install)") from exc
    return Comm(base.Get_rank(), base.Get_size(), base.Dup())


def check_launcher() -> None:
    """Refuse a job whose MPI world does not match the launcher's task count.

    ``srun`` without an MPI plugin (or ``SLURM_NTASKS`` > 1 with no ``mpirun``) starts N
    independent one-rank processes: each would run the whole job alone and all would write
    the same run directory. Raises :class:`~distnqs.errors.DistnqsError` (one line).
    """
    from distnqs.errors import DistnqsError
    from distnqs.launch import launcher_size_source

    name, expected = launcher_size_source()
    actual = world().size
    if expected > 1 and actual != expected:
        why = ("mpi4py is not installed" if _mpi() is None and not os.environ.get("DISTNQS_NO_MPI")
               else "DISTNQS_NO_MPI is set" if os.environ.get("DISTNQS_NO_MPI")
               else "srun without --mpi=pmi2/pmix, or no mpirun?")
        raise DistnqsError(
            f"the launcher started {expected} tasks ({name}={os.environ.get(name)}) but MPI sees {actual} rank(s) "
            f"({why}); each task would run alone and all would write the same run directory"
        )


def mpi_info() -> dict:
    """Versions of the MPI stack: MPI library, mpi4py, mpi4jax and its CUDA support (``None`` = missing)."""
    info = {"mpi_library": None, "mpi4py": None, "mpi4jax": None, "mpi4jax_cuda": None,
            "cuda_mpi": os.environ.get("MPI4JAX_USE_CUDA_MPI", "") not in ("", "0", "false", "False")}
    MPI = _mpi()
    if MPI is not None:
        import mpi4py

        info["mpi4py"] = mpi4py.__version__
        info["mpi_library"] = MPI.Get_library_version().strip().splitlines()[0].strip()
    try:
        import mpi4jax
    except ImportError:
        return info
    info["mpi4jax"] = mpi4jax.__version__
    has_cuda = getattr(mpi4jax, "has_cuda_support", None)
    info["mpi4jax_cuda"] = bool(has_cuda()) if has_cuda is not None else None
    return info


def rank() -> int:
    return world().rank


def size() -> int:
    return world().size


# ---------------------------------------------------------------------------
# Collectives usable inside jit (mpi4jax); identities for one rank.
# ---------------------------------------------------------------------------

def _allreduce(x, op_name: str):
    comm = world()
    if comm.size == 1:
        return x
    import mpi4jax

    op = getattr(_mpi(), op_name)
    return mpi4jax.allreduce(x, op=op, comm=comm.mpi_comm)


def sum(x):  # noqa: A001 - mirrors MPI.SUM
    r"""Allreduce-sum of an array (or pytree) over ranks: :math:`\sum_r x_r`."""
    return jax.tree_util.tree_map(lambda a: _allreduce(a, "SUM"), x)


def max(x):  # noqa: A001
    """Allreduce-max over ranks."""
    return jax.tree_util.tree_map(lambda a: _allreduce(a, "MAX"), x)


def allgather(x):
    r"""Every rank's ``x`` stacked on a new leading axis, on every rank: shape ``(R, *x.shape)``
    with row :math:`r` from rank :math:`r` (``x[None]`` for one rank). Same shape and dtype on all ranks."""
    comm = world()
    if comm.size == 1:
        return jnp.asarray(x)[None]
    import mpi4jax

    return mpi4jax.allgather(x, comm=comm.mpi_comm)


def alltoall(x):
    r"""All-to-all exchange: ``x`` has shape ``(R, ...)``; block ``x[j]`` goes to rank :math:`j`, and
    the result's block :math:`i` is what rank :math:`i` sent here, :math:`y^{(r)}_i = x^{(i)}_r`
    (``x`` itself for one rank). Same shape and dtype on all ranks."""
    comm = world()
    if x.shape[0] != comm.size:
        raise ValueError(f"alltoall needs a leading axis of size {comm.size} (the number of ranks), got {x.shape}")
    if comm.size == 1:
        return x
    import mpi4jax

    return mpi4jax.alltoall(x, comm=comm.mpi_comm)


def mean(x, axis=None, local_count=None):
    r"""Mean over all samples of all ranks.

    ``x`` holds this rank's samples; with ``axis=None`` every element is a
    sample. Equal sample counts per rank are assumed unless ``local_count``
    is given: :math:`\bar x = \sum_r \sum_i x_{r,i} / \sum_r n_r`.
    """
    x = jnp.asarray(x)
    local_sum = jnp.sum(x, axis=axis)
    if local_count is None:
        n = x.size if axis is None else np.prod([x.shape[a] for a in np.atleast_1d(axis)])
        return sum(local_sum) / (n * size())
    return sum(local_sum) / sum(jnp.asarray(local_count, dtype=local_sum.real.dtype))


def total_count(n_local: int) -> int:
    """Number of samples over all ranks, assuming the same count per rank."""
    return n_local * size()


# ---------------------------------------------------------------------------
# Host-side (outside jit) helpers. Every rank calls them: none may sit inside
# a rank-0-only branch.
# ---------------------------------------------------------------------------

def bcast_object(obj, root: int = 0):
    """Broadcast a picklable object from ``root`` to every rank."""
    comm = world()
    if comm.size == 1:
        return obj
    return comm.mpi_comm.bcast(obj, root=root)


def gather_object(obj, root: int = 0):
    """Gather one picklable object per rank on ``root`` (list there, None elsewhere)."""
    comm = world()
    if comm.size == 1:
        return [obj]
    return comm.mpi_comm.gather(obj, root=root)


def allgather_object(obj):
    comm = world()
    if comm.size == 1:
        return [obj]
    return comm.mpi_comm.allgather(obj)


def scatter_object(objs, root: int = 0):
    comm = world()
    if comm.size == 1:
        return objs[0]
    return comm.mpi_comm.scatter(objs, root=root)


def barrier() -> None:
    """Wait until every rank has arrived, sleeping while waiting.

    MPICH's blocking calls poll in a busy loop: a rank waiting in ``Barrier`` or
    ``bcast`` for rank 0 (writing a checkpoint, diagonalizing the reference)
    takes a whole core, which on a node with more ranks than cores is
    taken from the rank doing the work. Here the wait is a nonblocking barrier
    tested with sleeps growing from 50 us to 10 ms (so a short wait costs little
    latency and a long one almost no CPU).
    """
    comm = world()
    if comm.size == 1:
        return
    request = comm.mpi_comm.Ibarrier()
    pause = 5e-5
    while not request.Test():
        time.sleep(pause)
        pause = min(2 * pause, 0.01)


def any_true(flag: bool) -> bool:
    """Logical OR of a host-side flag over ranks (e.g. 'a signal arrived')."""
    comm = world()
    if comm.size == 1:
        return bool(flag)
    return bool(comm.mpi_comm.allreduce(bool(flag), op=_mpi().LOR))


# Seconds between flushing this rank's output and MPI_Abort: the launcher forwards each rank's
# stdout/stderr through pipes, and an abort that kills the job at once can cut a traceback that
# was already written (seen with mpich's hydra: only its first line reached mpirun's stderr).
ABORT_GRACE_S = 1.0


def abort(code: int = 1) -> None:
    """Abort every rank of the job (used when one rank hits an unexpected error)."""
    comm = world()
    if comm.size > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        time.sleep(ABORT_GRACE_S)
        _mpi().COMM_WORLD.Abort(code)
    raise SystemExit(code)


def install_abort_hook() -> None:
    """Make an uncaught exception on any rank abort the whole job within seconds.

    Without it, the failing rank exits while the others wait forever in the
    next collective.
    """
    if world().size == 1:
        return
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        if previous is sys.__excepthook__:  # the whole traceback in one write, so it is forwarded whole
            sys.stderr.write("".join(traceback.format_exception(exc_type, exc, tb)))
        else:
            previous(exc_type, exc, tb)
        abort(1)

    sys.excepthook = hook


# ---------------------------------------------------------------------------
# Randomness: keys derived from (seed, rank, step) only.
# ---------------------------------------------------------------------------

def rank_key(seed: int, rank_index: int | None = None):
    """PRNG key of one rank: ``fold_in(PRNGKey(seed), rank)``."""
    r = world().rank if rank_index is None else rank_index
    return jax.random.fold_in(jax.random.PRNGKey(seed), r)


def step_key(seed: int, step, rank_index: int | None = None):
    """Key of one rank at one optimization step: ``fold_in(rank_key, step)``."""
    return jax.random.fold_in(rank_key(seed, rank_index), step)


def on_root(fn, *args, **kwargs):
    """Run ``fn`` on rank 0 only and give its result (or its exception) to every rank.

    The broadcast happens *outside* the rank-0 branch, so every rank takes
    part in it whether ``fn`` succeeded or raised: an error while reading a
    file on rank 0 becomes the same exception on all ranks, never a hang.
    """
    outcome = None
    if world().rank == 0:
        try:
            outcome = ("ok", fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - re-raised on every rank below
            outcome = ("error", exc)
    barrier()  # the others wait here asleep, not spinning in the broadcast
    outcome = bcast_object(outcome)
    if outcome[0] == "error":
        raise outcome[1]
    return outcome[1]
