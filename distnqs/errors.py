"""Exceptions that the command line turns into one clear error line.

Every user-facing mistake (unknown name, wrong shape, impossible size,
damaged file) raises :class:`DistnqsError` (or a subclass); ``distnqs`` prints
``distnqs: error: <message>`` and exits with status 2. Anything else is a bug
and is reported with a traceback (and aborts every MPI rank).
"""


class DistnqsError(Exception):
    """A user-facing error: bad input, bad config, damaged file."""


class ConfigError(DistnqsError):
    """The run configuration is missing, malformed or inconsistent."""


class CheckpointError(DistnqsError):
    """No usable checkpoint, or a checkpoint that does not fit the run."""
