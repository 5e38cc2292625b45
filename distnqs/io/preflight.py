"""Before the first step: is the run directory writable, and is there room for what the run will write?

Called on rank 0 through :func:`distnqs.comm.on_root`. The space needed is
estimated from the actual state pytrees: one checkpoint is parameter bytes +
optimizer-state bytes + sampler-state bytes x ranks + HDF5 overhead, the log
:func:`distnqs.io.log.estimate_bytes`; free space from ``os.statvfs``
(``f_bavail * f_frsize``: what an unprivileged user may still write; a quota
that is not a file system limit is not seen).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from distnqs.errors import RunIOError
from distnqs.io import checkpoint, log
from distnqs.io.files import newest_valid_checkpoint, writing


def _leaves(tree) -> list:
    import jax

    return jax.tree_util.tree_leaves(tree)


def _kb(n: int) -> str:
    return f"{n / 1024:.0f} kB" if n < 10 * 1024**2 else f"{n / 1024**2:.0f} MB"


def check_run_directory(outdir, params, opt_state, sampler_state, n_ranks: int, n_steps: int, keep: int) -> dict:
    """Refuse (:class:`RunIOError`, one line) an unwritable run directory or one without room for one checkpoint plus the log.

    Warns when there is room for that but not for the ``keep + 1`` checkpoints
    that exist for a moment while the newest is written. Returns the estimate.
    """
    outdir = Path(outdir)
    probe = outdir / f".distnqs-write-test-{os.getpid()}"
    with writing("a write test file", outdir, cleanup=[probe]):
        with open(probe, "wb") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
        probe.unlink()
        st = os.statvfs(outdir)
    free = st.f_bavail * st.f_frsize
    one = checkpoint.estimate_bytes(_leaves(params), _leaves(opt_state), _leaves(sampler_state), n_ranks)
    log_bytes = log.estimate_bytes(n_steps)
    need = one + log_bytes
    want = (keep + 1) * one + log_bytes
    if free < need:
        raise RunIOError(
            "checkpoints and log.h5",
            f"{_kb(free)} free, one checkpoint ({_kb(one)}) plus the log ({_kb(log_bytes)}) need about {_kb(need)}",
            newest_valid_checkpoint(outdir),
            str(outdir),
        )
    if free < want:
        print(
            f"distnqs: warning: {outdir} has {_kb(free)} free; {keep} kept checkpoints plus the one being written and the log need "
            f"about {_kb(want)}: the run may stop with an I/O error (exit 74)",
            file=sys.stderr,
            flush=True,
        )
    return {"free": free, "checkpoint": one, "log": log_bytes}
