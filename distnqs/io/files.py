"""Atomic file writes: temporary name in the same directory, flush, fsync, rename."""

from __future__ import annotations

import json
import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=float) + "\n")


def check_outdir(outdir, force: bool) -> Path:
    """``outdir`` as a Path, after refusing a non-directory or an existing ``summary.json`` without ``force``.

    Raises :class:`distnqs.errors.ConfigError` (one line, non-zero exit from the CLI); creates nothing.
    """
    from distnqs.errors import ConfigError

    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise ConfigError(f"--outdir {outdir} exists and is not a directory")
    if (outdir / "summary.json").exists() and not force:
        raise ConfigError(f"{outdir / 'summary.json'} exists; use --force to overwrite these results")
    return outdir
