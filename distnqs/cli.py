"""Command line: ``distnqs {run,evolve,info,plot,doctor,report,tomography,ising-vae} ...``.

User mistakes (:class:`distnqs.errors.DistnqsError`) end in one line
``distnqs: error: ...`` on stderr and exit status 2. A failed write to the run
directory (:class:`distnqs.errors.RunIOError`: disk full, quota, read-only or
removed directory) ends in one line on rank 0 and exit status 74 on every rank
(``EX_IOERR``; 75 is a run stopped by a signal, see :mod:`distnqs.driver`);
the line names the checkpoint a rerun resumes from. ``distnqs run --debug``
(or ``DISTNQS_DEBUG=1``) adds the traceback. Under MPI an unexpected
exception on any rank aborts the whole job (see :func:`distnqs.comm.install_abort_hook`)
so that no rank waits forever in a collective.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
import warnings

import distnqs  # noqa: F401  (process set-up before jax is imported)
from distnqs.errors import DistnqsError, DistnqsWarning, RunIOError

EXIT_USER_ERROR = 2
EXIT_IO_ERROR = 74  # EX_IOERR (sysexits.h)

# Sub-commands implemented in their own packages: name -> "module:function".
# Each function takes the remaining argv list and returns an exit status.
_COMMANDS = {
    "run": ("distnqs.run_commands:run_main", "run (or resume) a VMC job from a TOML config"),
    "evolve": ("distnqs.run_commands:evolve_main", "real- or imaginary-time t-VMC (TDVP) from a TOML config with a [dynamics] table"),
    "info": ("distnqs.run_commands:info_main", "status, step, latest energy and checkpoints of a run directory"),
    "plot": ("distnqs.run_commands:plot_main", "PNG of energy against step for a run directory"),
    "doctor": ("distnqs.doctor:main", "what runs where (ranks, cores, devices, MPI), checked; run it under mpirun/srun too"),
    "report": ("distnqs.run_commands:report_main", "compare a run with the literature values"),
    "tomography": ("distnqs.generative.tomography.cli:main", "conditional-VAE reconstruction from IC-POVM data"),
    "ising-vae": ("distnqs.generative.ising.cli:main", "Wolff Monte Carlo + VAE on classical Ising configurations"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="distnqs",
        description="Distributed variational Monte Carlo with neural quantum states.",
    )
    parser.add_argument("--version", action="version", version=f"distnqs {distnqs.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in _COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _error(message: str) -> None:
    print(f"distnqs: error: {message}", file=sys.stderr, flush=True)


def _format_own_warnings() -> None:
    """Print :class:`DistnqsWarning` as one line ``distnqs: warning: ...``.

    Python's default format adds the file name and the source line of the
    ``warnings.warn`` call, which means nothing to a user reading a job log.
    Other warnings (jax, h5py, ...) keep that format.
    """
    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, DistnqsWarning):
            print(f"distnqs: warning: {message}", file=file or sys.stderr, flush=True)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if not argv or argv[0] in ("-h", "--help", "--version"):
        parser.parse_args(argv or ["--help"])
        return 0
    name, rest = argv[0], argv[1:]
    if name not in _COMMANDS:
        _error(f"unknown command {name!r}; choose one of: {', '.join(_COMMANDS)}")
        return EXIT_USER_ERROR
    target, _ = _COMMANDS[name]
    _format_own_warnings()
    module_name, func_name = target.split(":")
    try:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            raise DistnqsError(f"command {name!r} is not available in this installation ({module_name} is missing)") from exc
        return int(getattr(module, func_name)(rest) or 0)
    except RunIOError as exc:  # raised on every rank alike (comm.on_root): one line, from rank 0
        from distnqs import comm

        if comm.rank() == 0:
            if os.environ.get("DISTNQS_DEBUG"):
                traceback.print_exc()
            _error(str(exc).splitlines()[0])
        return EXIT_IO_ERROR
    except DistnqsError as exc:
        if os.environ.get("DISTNQS_DEBUG"):
            traceback.print_exc()
        _error(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        _error("interrupted")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
