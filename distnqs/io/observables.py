"""``observables.h5``: the final parameters' observables with error bars (written by rank 0).

Layout: the nested dictionary of :meth:`distnqs.observables.ObservableSet.summary` as HDF5 groups,
lists and numbers as datasets (``NaN`` where ``summary.json`` has ``null``), e.g.
``correlations/distance``, ``correlations/zz/mean``, ``correlations/zz/error``,
``structure_factor/k``, ``structure_factor/spin_spin/mean``, ``structure_factor/pi/zz/mean``,
``sx/mean``. Written like a checkpoint: the HDF5 image is built in memory, then written to a
temporary name, fsynced and renamed (:func:`distnqs.io.files.atomic_write_bytes`).
"""

from __future__ import annotations

import io
from pathlib import Path

import h5py
import numpy as np

from distnqs.io.files import atomic_write_bytes

FILENAME = "observables.h5"


def _as_array(value) -> np.ndarray:
    """Numbers / (nested) lists as float64, ``None`` (JSON's null) as NaN."""
    a = np.asarray(np.nan if value is None else value, dtype=object)
    return np.asarray(np.frompyfunc(lambda v: np.nan if v is None else v, 1, 1)(a), dtype=np.float64)


def _write_group(group: h5py.Group, data: dict) -> None:
    for key, value in data.items():
        if isinstance(value, dict):
            _write_group(group.create_group(key), value)
        else:
            group.create_dataset(key, data=_as_array(value))


def write_observables(path, data: dict, attrs: dict | None = None) -> Path:
    """Write ``data`` (nested dict of numbers / lists) to ``path`` atomically."""
    image = io.BytesIO()
    with h5py.File(image, "w") as f:
        _write_group(f, data)
        for key, value in (attrs or {}).items():
            f.attrs[key] = value
    atomic_write_bytes(path, image.getvalue())
    return Path(path)


def read_observables(path) -> dict:
    """``observables.h5`` as a nested dict of numpy arrays (and the file attributes under ``"attrs"``)."""
    def read(group):
        return {k: read(v) if isinstance(v, h5py.Group) else v[()] for k, v in group.items()}

    with h5py.File(path, "r") as f:
        out = read(f)
        out["attrs"] = dict(f.attrs)
    return out
