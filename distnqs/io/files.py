"""Atomic file writes (temporary name in the same directory, flush, fsync, rename) and I/O faults.

Every write into a run directory goes through :func:`writing`: an ``OSError``
(``ENOSPC``, ``EDQUOT``, ``EROFS``, ``EACCES``, a removed directory...), or the
``RuntimeError`` h5py raises when a flush fails (``... errno = 28 ...``),
becomes one :class:`distnqs.errors.RunIOError` that names what was being
written, the errno text and the newest valid checkpoint a rerun resumes from;
the temporary file of the failed write is removed.
"""

from __future__ import annotations

import errno as errno_mod
import json
import os
import re
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from distnqs.errors import RunIOError

_ERRNO_IN_TEXT = re.compile(r"errno\s*=\s*(\d+)")
FAULT_ENV = "DISTNQS_FAULT_IO"


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


def io_errno(exc: BaseException) -> int | None:
    """The errno of an I/O failure: ``exc.errno``, or ``errno = N`` in an HDF5 message."""
    if isinstance(exc, OSError) and exc.errno:
        return int(exc.errno)
    if isinstance(exc, (OSError, RuntimeError)):
        m = _ERRNO_IN_TEXT.search(str(exc))
        if m and int(m.group(1)):
            return int(m.group(1))
    return None


def errno_text(exc: BaseException) -> str:
    """``No space left on device [ENOSPC]`` (or the first line of the message when there is no errno)."""
    code = io_errno(exc)
    if code is None:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return text
    return f"{os.strerror(code)} [{errno_mod.errorcode.get(code, code)}]"


def newest_valid_checkpoint(outdir) -> str | None:
    """File name of the newest checkpoint in ``outdir`` that verifies (``None``: none)."""
    from distnqs.errors import CheckpointError
    from distnqs.io import checkpoint

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            data = checkpoint.read_newest_valid(outdir)
        except (CheckpointError, OSError):
            return None
    return None if data is None else data["path"].name


def _remove_quietly(path) -> None:
    try:
        Path(path).unlink(missing_ok=True)
    except OSError:
        pass


@contextmanager
def writing(what: str, outdir, cleanup=()):
    """Translate an I/O failure inside the block into :class:`RunIOError`; remove ``cleanup`` files on failure.

    A ``RuntimeError`` without an errno in its text is not an I/O fault and passes through unchanged.
    """
    try:
        yield
    except RunIOError:
        for p in cleanup:
            _remove_quietly(p)
        raise
    except (OSError, RuntimeError) as exc:
        if not isinstance(exc, OSError) and io_errno(exc) is None:
            raise
        for p in cleanup:
            _remove_quietly(p)
        raise RunIOError(what, errno_text(exc), newest_valid_checkpoint(outdir), str(outdir)) from exc


def inject_io_fault(what: str, step, path) -> None:
    """Test hook: raise ``OSError`` while writing ``what`` when asked by the environment.

    ``DISTNQS_FAULT_IO=WHAT:STEP:ERRNAME`` (e.g. ``checkpoint:40:ENOSPC``,
    ``log:5:EROFS``, ``summary:*:EDQUOT``; ``*`` matches any step) makes the
    write of ``WHAT`` (``checkpoint``, ``log``, ``summary``) fail as a full
    disk, a read-only file system, ... would. Used by the I/O fault tests;
    never set in production.
    """
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    fault_what, fault_step, name = (spec.split(":") + ["", "", "ENOSPC"])[:3]
    if fault_what != what or (fault_step not in ("*", str(step))):
        return
    code = getattr(errno_mod, name or "ENOSPC")
    raise OSError(code, os.strerror(code), str(path))


def atomic_write_bytes(path, data: bytes, fault: str | None = None) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with writing(path.name, path.parent, cleanup=[tmp]):
        with open(tmp, "wb") as f:
            if fault:
                inject_io_fault(fault, "*", tmp)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)


def atomic_write_text(path, text: str, fault: str | None = None) -> None:
    atomic_write_bytes(path, text.encode(), fault=fault)


def strict_json(obj):
    """``obj`` with non-finite floats as ``None`` (JSON has no NaN / Infinity) and numpy scalars and
    arrays as Python ones, so that strict readers (``json.loads(..., parse_constant=...)``, jq, JS) accept it."""
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return strict_json(obj.tolist())
    if isinstance(obj, (np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    return obj


def atomic_write_json(path, obj) -> None:
    """Write ``obj`` as strict JSON (see :func:`strict_json`) atomically."""
    fault = "summary" if Path(path).name == "summary.json" else None
    atomic_write_text(path, json.dumps(strict_json(obj), indent=2, sort_keys=False, allow_nan=False, default=float) + "\n", fault=fault)


def make_run_dir(outdir) -> None:
    """``mkdir -p outdir``, as :class:`RunIOError` when the file system refuses."""
    outdir = Path(outdir)
    with writing("the run directory", outdir):
        outdir.mkdir(parents=True, exist_ok=True)


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
