"""Exceptions that the command line turns into one clear error line.

Every user-facing mistake (unknown name, wrong shape, impossible size,
damaged file) raises :class:`DistnqsError` (or a subclass); ``distnqs`` prints
``distnqs: error: <message>`` and exits with status 2. A failed write to the
run directory (disk full, quota, read-only, removed directory) raises
:class:`RunIOError`: the same one line, exit status 74 (``EX_IOERR``).
Anything else is a bug and is reported with a traceback (and aborts every MPI
rank).
"""


class DistnqsWarning(UserWarning):
    """Something the user should know that does not stop the run (stale lock taken over,
    damaged checkpoint or log set aside, sampler state re-drawn on resume).

    The command line prints it as one line ``distnqs: warning: <message>``
    (:func:`distnqs.cli.main`); the Python API leaves it to :mod:`warnings`.
    """


class DistnqsError(Exception):
    """A user-facing error: bad input, bad config, damaged file."""


class ConfigError(DistnqsError):
    """The run configuration is missing, malformed or inconsistent."""


class CheckpointError(DistnqsError):
    """No usable checkpoint, or a checkpoint that does not fit the run."""


class RunIOError(DistnqsError):
    """Writing to the run directory failed (``ENOSPC``, ``EDQUOT``, ``EROFS``, ``EACCES``, ``ENOENT``...).

    ``what`` names what was being written (``checkpoint-000000040.h5``,
    ``log.h5``, ``summary.json``, ...), ``reason`` is the errno text
    (``No space left on device [ENOSPC]``), ``resume_from`` the newest valid
    checkpoint a rerun resumes from (``None``: a rerun starts at step 0).
    Plain attributes, picklable: :func:`distnqs.comm.on_root` sends it to
    every rank.
    """

    def __init__(self, what: str, reason: str, resume_from: str | None = None, outdir: str | None = None):
        self.what, self.reason, self.resume_from, self.outdir = what, reason, resume_from, outdir
        where = f" in {outdir}" if outdir else ""
        then = f"a rerun resumes from {resume_from}" if resume_from else "no valid checkpoint yet, a rerun starts at step 0"
        super().__init__(f"I/O error: cannot write {what}{where}: {reason}; {then}")

    def __reduce__(self):
        return (type(self), (self.what, self.reason, self.resume_from, self.outdir))
