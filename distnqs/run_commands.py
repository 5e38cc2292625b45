"""``distnqs run | evolve | info | plot | report``: the run-directory commands."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from distnqs.errors import DistnqsError


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors become one ``distnqs: error:`` line (exit 2)."""

    def error(self, message):
        raise DistnqsError(f"{self.prog}: {message} (see {self.prog} --help)")


def _parse(prog: str, argv, build):
    parser = _Parser(prog=f"distnqs {prog}")
    build(parser)
    return parser.parse_args(argv)


def _run_directory_command(prog: str, argv, config_help: str, what: str, extra=None):
    """Parse the options ``run`` and ``evolve`` share, set up debugging and check the launcher;
    returns ``(args, cfg)`` with the config loaded and validated."""

    def build(p):
        p.add_argument("config", help=config_help)
        p.add_argument("--outdir", required=True, help=f"run directory (resumed if it holds {what} of the same problem)")
        p.add_argument("--restart", action="store_true", help="move an existing run in OUTDIR aside and start over")
        p.add_argument("--check", action="store_true", help="check the config and build the problem, then exit (OUTDIR untouched)")
        p.add_argument("--quiet", action="store_true", help="no per-step progress lines (batch logs)")
        p.add_argument("--debug", action="store_true", help="print the traceback of an error, not only its one line")
        p.add_argument("--stop-after", type=int, default=None, help=argparse.SUPPRESS)
        if extra is not None:
            extra(p)

    args = _parse(prog, argv, build)
    if args.debug:
        os.environ["DISTNQS_DEBUG"] = "1"
    from distnqs import comm, config

    comm.check_launcher()
    return args, config.load(args.config)


def run_main(argv) -> int:
    def reschedule(p):
        p.add_argument("--reschedule", action="store_true",
                       help="on resume with a changed n_steps, stretch the schedules over it (default: keep them, final value after)")

    args, cfg = _run_directory_command("run", argv, "TOML config file", "a run", reschedule)
    from distnqs.driver import run

    if args.check:
        from distnqs.problem import build_problem

        problem = build_problem(cfg)
        print(f"distnqs: config OK: {problem.describe()}")
        return 0
    _, code = run(cfg, args.outdir, quiet=args.quiet, restart=args.restart, stop_after=args.stop_after,
                  reschedule=args.reschedule)
    return code


def evolve_main(argv) -> int:
    """``distnqs evolve CONFIG --outdir D``: t-VMC (:mod:`distnqs.dynamics.evolve`); exit statuses as ``run``."""
    args, cfg = _run_directory_command("evolve", argv, "TOML config file with a [dynamics] table", "an evolution")
    from distnqs.dynamics.evolve import EvolveJob, evolve

    if "dynamics" not in cfg:
        raise DistnqsError(f"{args.config} has no [dynamics] table (distnqs evolve needs t_final and dt there)")
    if args.check:
        job = EvolveJob(cfg)
        print(f"distnqs: config OK: {job.problem.describe()}; {job.describe()}")
        return 0
    _, code = evolve(cfg, args.outdir, quiet=args.quiet, restart=args.restart, stop_after=args.stop_after)
    return code


def info_main(argv) -> int:
    def build(p):
        p.add_argument("outdir", help="run directory")

    args = _parse("info", argv, build)
    from distnqs.io.info import describe_run

    print(describe_run(Path(args.outdir)))
    return 0


def plot_main(argv) -> int:
    def build(p):
        p.add_argument("outdir", help="run directory")
        p.add_argument("--output", default=None, help="PNG path (default OUTDIR/energy.png)")

    args = _parse("plot", argv, build)
    from distnqs.io.plot import plot_run

    path = plot_run(Path(args.outdir), args.output)
    print(path)
    extra = path.with_name(path.stem + "-observables.png") if args.output else Path(args.outdir) / "observables.png"
    if (Path(args.outdir) / "observables.h5").exists() and extra.exists():
        print(extra)
    return 0


def report_main(argv) -> int:
    def build(p):
        p.add_argument("outdir", help="run directory")
        p.add_argument("--json", action="store_true", help="print the comparison as JSON")

    args = _parse("report", argv, build)
    from distnqs.report import compare_with_literature, format_report

    result = compare_with_literature(Path(args.outdir))
    print(json.dumps(result, indent=2) if args.json else format_report(result))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_main(sys.argv[1:]))
