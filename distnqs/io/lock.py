"""A lock file that keeps two jobs from writing one run directory.

Rank 0 takes the lock (through :func:`distnqs.comm.on_root`, so every rank
learns whether it succeeded) before the run writes anything, and releases it
when the run ends. The file ``OUTDIR/distnqs.lock`` holds the holder's host,
pid and batch job id as JSON. A lock is *stale*, and is taken over with a
warning, when

- its host is this host and its pid is no longer alive (a crashed or killed
  job; an ``MPI_Abort`` never runs the release), or
- its job id is this job's id (a Slurm requeue keeps the job id and may land on
  another node: the earlier incarnation of this very job is gone).

A lock held by this very process (an earlier ``run()`` in the same Python
session that raised) is taken back silently. Anything else is refused with
one line that names the holder and the file to delete if it is known to be
dead. A lock on another host cannot be checked from here.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import time
import warnings
from pathlib import Path

from distnqs.errors import DistnqsError, DistnqsWarning

LOCK_NAME = "distnqs.lock"
_JOB_ID_VARS = ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "JOB_ID")
_held: set[Path] = set()


class RunLockedError(DistnqsError):
    """The run directory is being written by another (live) job."""


def job_id() -> str | None:
    """The batch system's job id of this process, if any."""
    for name in _JOB_ID_VARS:
        if os.environ.get(name):
            return os.environ[name]
    return None


def _me() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "job_id": job_id(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def read(outdir) -> dict | None:
    """The lock's content (``{}`` when unreadable), ``None`` when there is no lock."""
    path = Path(outdir) / LOCK_NAME
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        holder = json.loads(text)
        return holder if isinstance(holder, dict) else {}
    except json.JSONDecodeError:
        return {}


def _describe(holder: dict) -> str:
    job = f", job {holder['job_id']}" if holder.get("job_id") else ""
    return f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}{job}, since {holder.get('since', '?')}"


def _verdict(holder: dict | None) -> str:
    """``free`` | ``mine`` | ``stale`` | ``live`` for a lock's content."""
    if holder is None:
        return "free"
    me = _me()
    same_host = holder.get("host") == me["host"]
    if same_host and holder.get("pid") == me["pid"]:
        return "mine"
    if holder.get("job_id") and holder.get("job_id") == me["job_id"]:
        return "stale"  # an earlier incarnation of this job (requeue)
    if same_host and isinstance(holder.get("pid"), int) and not pid_alive(holder["pid"]):
        return "stale"
    return "live"


def _locked(outdir: Path, holder: dict) -> RunLockedError:
    return RunLockedError(
        f"--outdir {outdir} is being written by another job ({_describe(holder)}); "
        f"if that job is dead, delete {outdir / LOCK_NAME}"
    )


def check_free(outdir) -> None:
    """Raise :class:`RunLockedError` if a live job holds ``outdir``'s lock; remove a stale one (warning).

    Called before the run directory is checked or moved aside (``--restart``); the lock
    itself is taken by :func:`acquire` once the directory is prepared.
    """
    outdir = Path(outdir)
    holder = read(outdir)
    verdict = _verdict(holder)
    if verdict == "live":
        raise _locked(outdir, holder)
    if verdict == "stale":
        _take_over(outdir / LOCK_NAME, holder)


def _take_over(path: Path, holder: dict | None) -> None:
    """Remove the lock file of a dead job (stale ``holder``) with a warning."""
    warnings.warn(f"taking over the stale lock of a dead job ({_describe(holder or {})}) on {path.parent}", DistnqsWarning, stacklevel=3)
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def acquire(outdir) -> dict:
    """Take ``outdir``'s lock (the directory must exist); returns what was written.

    Raises :class:`RunLockedError` when a live job holds it; takes over a stale
    lock with a warning.
    """
    outdir = Path(outdir)
    path = outdir / LOCK_NAME
    me = _me()
    for _ in range(3):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = read(outdir)
            verdict = _verdict(holder)
            if verdict == "live":
                raise _locked(outdir, holder)
            _take_over(path, holder) if verdict == "stale" else path.unlink(missing_ok=True)
            continue  # O_EXCL again: of two jobs taking over at once only one wins
        with os.fdopen(fd, "w") as fh:
            json.dump(me, fh)
            fh.flush()
            os.fsync(fh.fileno())
        _held.add(path)
        return me
    raise RunLockedError(f"could not take the lock {path}: another job keeps taking it")


def release(outdir) -> None:
    """Remove ``outdir``'s lock if this process holds it."""
    path = Path(outdir) / LOCK_NAME
    holder = read(outdir)
    if holder is not None and _verdict(holder) == "mine":
        try:
            path.unlink()
        except FileNotFoundError:
            pass
    _held.discard(path)


@atexit.register
def _release_all() -> None:  # a run that raised still frees its directory when the process exits
    for path in list(_held):
        release(path.parent)
