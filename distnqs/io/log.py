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
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import h5py
import numpy as np

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
    """Append-only (after truncation on resume) step log, used on rank 0 only."""

    def __init__(self, path, resume_step: int = 0):
        self.path = Path(path)
        rows = {}
        if self.path.exists():
            # Always rebuild: a writer killed with SIGKILL leaves the SWMR flag set in
            # the superblock and the file can no longer be opened for writing, but it
            # can still be read. Keep the rows of completed steps < resume_step.
            try:
                old = read_log(self.path)
                keep = int(np.searchsorted(old["step"], resume_step)) if old.get("step", np.empty(0)).size else 0
                rows = {name: old[name][:keep] for name in COLUMNS if name in old}
            except (OSError, KeyError, ValueError) as exc:
                aside = self.path.with_name(f"{self.path.name}.damaged-{int(time.time())}")
                self.path.rename(aside)
                warnings.warn(f"{self.path} was unreadable ({exc}); moved to {aside.name}, starting a new log", stacklevel=2)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with h5py.File(tmp, "w", libver="latest") as f:
            for name in COLUMNS:
                data = rows.get(name, np.empty(0))
                if data.size != (rows["step"].size if rows else 0):
                    data = np.full(rows["step"].size, np.nan)
                f.create_dataset(name, data=data.astype("f8"), maxshape=(None,), chunks=(1024,), fillvalue=np.nan)
        os.replace(tmp, self.path)
        self.file = h5py.File(self.path, "a", libver="latest")
        try:
            self.file.swmr_mode = True
        except (ValueError, RuntimeError):
            pass

    @property
    def n_rows(self) -> int:
        return int(self.file["step"].shape[0])

    def append(self, row: dict) -> None:
        n = self.n_rows
        for name in COLUMNS:
            ds = self.file[name]
            ds.resize((n + 1,))
            ds[n] = float(row.get(name, np.nan))
        self.file.flush()

    def truncate(self, step: int) -> None:
        """Drop the rows of steps >= ``step`` (a rollback undoes them)."""
        keep = int(np.searchsorted(self.file["step"][()], step))
        for name in COLUMNS:
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
            self.file.close()
        except Exception:  # noqa: BLE001 - closing during interpreter shutdown
            pass


def read_log(path) -> dict[str, np.ndarray]:
    """All columns of a log (works while the run is writing it)."""
    try:
        f = h5py.File(path, "r", libver="latest", swmr=True)
    except OSError:
        f = h5py.File(path, "r")
    with f:
        return {name: f[name][()] for name in f if isinstance(f[name], h5py.Dataset)}
