"""Per-step HDF5 log ``log.h5``: one row per optimization step, one dataset per column.

Columns: ``step``, ``energy_mean``, ``energy_mean_imag``, ``energy_error``,
``energy_variance``, ``tau_corr``, ``R_hat``, ``acceptance``,
``learning_rate``, ``seconds_per_step``, ``samples_per_second``, and
``m``, ``abs_m``, ``m2`` when magnetization is measured, and the step guard's
``update_norm``, ``fs_length`` (Fubini-Study length, SR only), ``guard_action``
(index into :data:`distnqs.optim.guard.ACTIONS`) and ``rollbacks`` (count so far).
Rollbacks are also recorded in the file attribute ``events`` (a JSON list). Rows are flushed
every step; the file is opened in SWMR mode where the HDF5 library allows it,
so ``h5py.File(path, "r", swmr=True)`` (or ``distnqs info``) reads it while the
run goes on. On resume from step ``t`` every row with ``step >= t`` is cut, so
the log never holds duplicated or missing steps.

Other drivers pass their own ``columns`` (``distnqs evolve``:
:data:`distnqs.dynamics.evolve.COLUMNS`, with ``t``, ``dt``, observables and
the TDVP residual); the file layout is the same.
"""

from __future__ import annotations

import errno
import io
import os
import time
import warnings
from pathlib import Path

import h5py
import numpy as np

from distnqs.errors import DistnqsWarning
from distnqs.io.files import inject_io_fault, io_errno, writing

LOCK_WAIT_S = 10.0  # how long the writer waits for a reader's HDF5 file lock on log.h5 to go

COLUMNS = (
    "step",
    "energy_mean",
    "energy_mean_imag",
    "energy_error",
    "energy_variance",
    "tau_corr",
    "R_hat",
    "acceptance",
    "learning_rate",
    "seconds_per_step",
    "samples_per_second",
    "m",
    "abs_m",
    "m2",
    "update_norm",
    "fs_length",
    "guard_action",
    "rollbacks",
)


class StepLog:
    """Append-only (after truncation on resume) step log, used on rank 0 only.

    A failed write (full disk, read-only or removed directory) raises
    :class:`distnqs.errors.RunIOError`. A ``log.h5`` that cannot be read on
    resume (truncated, not HDF5) is moved aside to ``log.h5.damaged-<time>``
    with a warning, and the new log gets one row per step before the resume
    step holding only the step number (the other columns NaN): its rows stay
    one per step.
    """

    def __init__(self, path, resume_step: int = 0, columns: tuple = COLUMNS):
        self.path = Path(path)
        self.file = None
        self.columns = tuple(columns)
        with writing(self.path.name, self.path.parent, cleanup=[self._tmp]):
            self._open(resume_step)

    @property
    def _tmp(self) -> Path:
        return self.path.with_name(f".{self.path.name}.tmp")

    def _open(self, resume_step: int) -> None:
        rows = {}
        if self.path.exists():
            # Always rebuild: a writer killed with SIGKILL leaves the SWMR flag set in
            # the superblock and the file can no longer be opened for writing, but it
            # can still be read. Keep the rows of completed steps < resume_step.
            try:
                _check_not_truncated(self.path)
                old = read_log(self.path)
                keep = int(np.searchsorted(old["step"], resume_step)) if old.get("step", np.empty(0)).size else 0
                rows = {name: old[name][:keep] for name in self.columns if name in old}
            except Exception as exc:  # noqa: BLE001 - truncated, not HDF5, missing column...: never a traceback
                aside = self.path.with_name(f"{self.path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
                k = 1
                while aside.exists():
                    aside = self.path.with_name(f"{self.path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}-{k}")
                    k += 1
                self.path.rename(aside)
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                warnings.warn(
                    f"{self.path} was unreadable ({first}); moved to {aside.name}, new log with the rows of steps "
                    f"< {resume_step} left empty (NaN)",
                    DistnqsWarning,
                    stacklevel=3,
                )
                rows = {"step": np.arange(resume_step, dtype="f8")}
        n = rows["step"].size if rows else 0
        image = io.BytesIO()  # built in memory: a full disk fails in one plain write, not inside HDF5
        with h5py.File(image, "w", libver="latest") as f:
            for name in self.columns:
                data = rows.get(name, np.empty(0))
                if data.size != n:
                    data = np.full(n, np.nan)
                f.create_dataset(name, data=data.astype("f8"), maxshape=(None,), chunks=(1024,), fillvalue=np.nan)
        with open(self._tmp, "wb") as out:
            out.write(image.getbuffer())
            out.flush()
            os.fsync(out.fileno())
        os.replace(self._tmp, self.path)
        self.file = _open_for_append(self.path)
        self._fd = self.file.id.get_vfd_handle()
        self._datasets = {name: self.file[name] for name in self.columns}  # held open: no HDF5 object is freed after a failure
        try:
            self.file.swmr_mode = True
        except (ValueError, RuntimeError):
            pass

    def _detach(self) -> None:
        """After a failed write, point HDF5's file descriptor at /dev/null.

        HDF5 keeps the dirty metadata of a failed flush and retries it whenever
        an object is freed or the file closed (tracebacks from ``__dealloc__``,
        and a crash at exit); written to /dev/null, those retries succeed and
        the file closes cleanly. What is on disk stays as the last successful
        flush left it (a resume rebuilds the log).
        """
        try:
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, self._fd)
            os.close(null)
        except (OSError, AttributeError, TypeError):
            pass

    @property
    def n_rows(self) -> int:
        return int(self._datasets["step"].shape[0])

    def append(self, row: dict) -> None:
        with writing(self.path.name, self.path.parent):
            try:
                inject_io_fault("log", int(row.get("step", -1)), self.path)
                n = self.n_rows
                for name in self.columns:
                    ds = self._datasets[name]
                    ds.resize((n + 1,))
                    ds[n] = float(row.get(name, np.nan))
                self.file.flush()
            except BaseException:
                self._detach()
                raise

    def truncate(self, step: int) -> None:
        """Drop the rows of steps >= ``step`` (a rollback undoes them)."""
        keep = int(np.searchsorted(self.file["step"][()], step))
        for name in self.columns:
            self.file[name].resize((keep,))
        self.file.flush()

    def record_event(self, event: dict) -> None:
        """Append ``event`` to the JSON list in the file attribute ``events``."""
        import json

        events = json.loads(self.file.attrs.get("events", "[]"))
        events.append(event)
        self.file.attrs["events"] = json.dumps(events)
        self.file.flush()

    def close(self) -> None:
        try:
            if self.file is not None:
                self._datasets = {}
                self.file.close()
        except Exception:  # noqa: BLE001 - closing during interpreter shutdown, or after a failed write
            pass


def _check_not_truncated(path) -> None:
    """``OSError`` when the file is shorter than the end-of-file address in its HDF5 superblock (v2/v3).

    HDF5 skips this check when a file is opened for SWMR reading, and iterating
    a truncated file then never ends: checked here before :func:`read_log`.
    """
    with open(path, "rb") as f:
        head = f.read(64)
    if head[:8] != b"\x89HDF\r\n\x1a\n":
        raise OSError(f"{path} is not an HDF5 file")
    if head[8] in (2, 3):
        size_of_offsets = head[9]
        start = 12 + 2 * size_of_offsets
        eof = int.from_bytes(head[start:start + size_of_offsets], "little")
        if len(head) < start + size_of_offsets or os.path.getsize(path) < eof:
            raise OSError(f"truncated file: {os.path.getsize(path)} bytes, the superblock says {eof}")


def estimate_bytes(n_steps: int, n_columns: int = len(COLUMNS)) -> int:
    """Size of a log of ``n_steps`` rows: chunks of 1024 float64 per column plus HDF5 overhead."""
    chunks = max(1, -(-int(n_steps) // 1024))
    return n_columns * (chunks * 1024 * 8 + 1024) + 4096


def _open_for_append(path: Path) -> h5py.File:
    """``h5py.File(path, "a")``, retried for up to :data:`LOCK_WAIT_S` while another process holds
    HDF5's lock on the file (a user's ``h5py.File(path)``, an older ``distnqs info``): that is
    ``EAGAIN``, not a failure of the disk, and must not end the run."""
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            return h5py.File(path, "a", libver="latest")
        except OSError as exc:
            if io_errno(exc) != errno.EAGAIN or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def read_log(path) -> dict[str, np.ndarray]:
    """All columns of a log (works while the run is writing it). Opened without HDF5's file
    lock, so that reading (``distnqs info``, ``plot``) never makes the run's writer fail."""
    try:
        f = h5py.File(path, "r", libver="latest", swmr=True, locking=False)
    except OSError:
        f = h5py.File(path, "r", locking=False)
    with f:
        return {name: f[name][()] for name in f if isinstance(f[name], h5py.Dataset)}
