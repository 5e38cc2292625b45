"""Symmetric against plain ansatz on frustrated tori (issue: symmetric ansatze).

``--case 4x4`` (default): J1-J2 Heisenberg at J2 = 0.5 on the 4x4 periodic square lattice, Marshall
sign on the J1 bonds (the ground state is not positive at J2 = 0.5; it has zero momentum),
``configs/symmetric/j1j2_4x4_plain.toml`` against ``j1j2_4x4_translations.toml`` (zero momentum),
otherwise as below. Writes benchmarks/results/symmetric_j1j2_4x4.json.

``--case 6x3``: J1-J2 Heisenberg at J2 = 0.5 on the 6x3 periodic square lattice (Pauli units), complex RBM
alpha 1, SR (CG), 120 steps of 1024 Metropolis-exchange samples (256 chains), S^z = 0, 2 MPI ranks,
the same seed: ``configs/symmetric/j1j2_6x3_plain.toml`` against ``j1j2_6x3_translations.toml``, which
differ only in ``symmetries = "translations"``, ``sector = [3, 0]`` (the exact ground state has
momentum (pi, 0) in this basis). Each run is the user's command,

    mpirun -np 2 distnqs run configs/symmetric/<name>.toml --outdir <tmp>/<name>

one after the other on the same machine; the final energy is the run's own evaluation with the
final parameters (``eval_steps`` fresh batches), against its Lanczos reference (reference.json).
The per-step training energies from ``log.h5`` give the curve (mean over the last 50 steps too).

The projected run alone does not train (a near-constant network projected onto k != 0 cancels;
README, "Symmetric ansatze"), so the case has a third run, ``j1j2_6x3_translations_warm.toml``: the
same projection started from the plain run's final parameters (``[run] init_from =
"runs/j1j2-6x3-plain"``, resolved in the working directory of the runs), 120 more steps.

    .venv/bin/python benchmarks/bench_symmetric.py --case 6x3  # 1 + 10 + 10 min on 2 cores (each amplitude: 18 forward passes)

Writes benchmarks/results/symmetric_j1j2_6x3.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from distnqs.io.log import read_log

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
CASES = {  # case -> (plain config, projected configs..., description); run in this order
    "4x4": ("j1j2_4x4_plain", "j1j2_4x4_translations", "J1-J2 J2=0.5, 4x4 periodic, Marshall sign on J1, zero momentum"),
    "6x3": ("j1j2_6x3_plain", "j1j2_6x3_translations", "j1j2_6x3_translations_warm",
            "J1-J2 J2=0.5, 6x3 periodic, momentum (pi, 0)"),
}


def run_one(name: str, workdir: Path, np_: int) -> dict:
    """One run through the CLI under mpirun; returns its summary, wall time and energy trace."""
    bindir = Path(sys.executable).parent
    mpirun = shutil.which("mpirun", path=str(bindir)) or shutil.which("mpirun")
    out = workdir / "runs" / name.replace("_", "-")  # the configs' own commands' --outdir (init_from names one)
    cmd = [mpirun, "-np", str(np_), sys.executable, "-m", "distnqs", "run",
           str(REPO / "configs" / "symmetric" / f"{name}.toml"), "--outdir", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"), cwd=workdir)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"bench_symmetric: {name} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    summary = json.loads((out / "summary.json").read_text())
    log = read_log(out / "log.h5")
    n = summary["n_sites"]
    e_ref = summary["reference"]["energy_per_site"]
    trace = np.asarray(log["energy_mean"]) / n
    return {
        "config": f"configs/symmetric/{name}.toml",
        "wall_s": wall,
        "n_parameters": summary["n_parameters"],
        "energy_per_site": summary["energy_per_site"],
        "energy_per_site_error": summary["energy_per_site_error"],
        "relative_error": summary["reference"]["relative_error"],
        "last50_mean_relative_error": float(abs(trace[-50:].mean() - e_ref) / abs(e_ref)),
        "trace_energy_per_site": [float(x) for x in trace],
        "reference_energy_per_site": e_ref,
        "reference_source": summary["reference"]["source"],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--np", type=int, default=2, help="MPI ranks per run (default 2)")
    ap.add_argument("--case", choices=sorted(CASES), default="4x4")
    ap.add_argument("--out", type=Path, help="default: benchmarks/results/symmetric_j1j2_<case>.json")
    ap.add_argument("--reuse", nargs="+", default=[], metavar="CONFIG",
                    help="take these runs (config names) from the existing --out file instead of running them again")
    args = ap.parse_args(argv)
    *configs, description = CASES[args.case]
    out = args.out or RESULTS / f"symmetric_j1j2_{args.case}.json"
    recorded = json.loads(out.read_text())["runs"] if args.reuse else {}
    missing = [name for name in args.reuse if name not in recorded]
    if missing:
        raise SystemExit(f"bench_symmetric: --reuse {missing[0]}: not in {out}")
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in configs:
            runs[name] = recorded[name] if name in args.reuse else {
                **run_one(name, Path(tmp), args.np), "measured": time.strftime("%Y-%m-%d")}
    for name, r in runs.items():
        print(f"{name:24s} E/N = {r['energy_per_site']:.6f} +- {r['energy_per_site_error']:.1e}  "
              f"rel. error {r['relative_error']:.2e}  ({r['wall_s']:.0f} s, {r['n_parameters']} parameters)")
    plain = runs[configs[0]]["relative_error"]
    ratios = {f"error_ratio_plain_over_{c.split('_', 2)[-1]}": plain / runs[c]["relative_error"] for c in configs[1:]}
    result = {
        "case": f"{description}, complex RBM alpha 1, SR, 120 steps x 1024 samples, {args.np} MPI ranks",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "runs": runs,
        **ratios,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    for key, ratio in ratios.items():
        print(f"relative error, {key[len('error_ratio_'):].replace('_over_', ' / ')}: {ratio:.3g} (> 1: the projection helps)")
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
