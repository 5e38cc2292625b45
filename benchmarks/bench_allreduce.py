"""Latency and bandwidth of one jitted mpi4jax allreduce (the path every distnqs reduction takes).

    mpirun -np 2 .venv/bin/python benchmarks/bench_allreduce.py            # 8 B .. 8 MB
    mpirun -np 2 .venv/bin/python benchmarks/bench_allreduce.py --smoke    # two sizes, a few repeats

Each size: a float64 vector on each rank's device, ``jax.jit(comm.sum)`` compiled once, then
``--repeats`` timed calls (a barrier before each, ``block_until_ready`` after), median and
minimum over the repeats, on rank 0. The result is checked. A fit ``t(b) = alpha + b / beta``
over the sizes gives the latency ``alpha`` and the bandwidth ``beta`` used by docs/scaling.md.
Writes benchmarks/results/allreduce.json (``--out`` to change). On a shared machine the
timings are noisy: the minimum is the cleanest figure, the median the typical one.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import distnqs  # noqa: F401  (pinning and x64 before jax)
import jax
import jax.numpy as jnp
import numpy as np

from distnqs import comm

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-bytes", type=int, default=8)
    parser.add_argument("--max-bytes", type=int, default=8 * 2**20)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--smoke", action="store_true", help="8 B and 8 kB, 5 repeats (a check that it runs)")
    parser.add_argument("--out", default=str(RESULTS / "allreduce.json"))
    args = parser.parse_args(argv)
    sizes, b = [], args.min_bytes
    while b <= args.max_bytes:
        sizes.append(b)
        b *= 4
    repeats = args.repeats
    if args.smoke:
        sizes, repeats = [8, 8192], 5
    reduce = jax.jit(comm.sum)
    rows = []
    for nbytes in sizes:
        n = max(1, nbytes // 8)
        x = jax.device_put(jnp.full((n,), comm.rank() + 1.0, dtype=jnp.float64), jax.devices()[0])
        y = reduce(x).block_until_ready()  # compile
        want = comm.size() * (comm.size() + 1) / 2
        assert np.all(np.asarray(y) == want), (np.asarray(y)[:4], want)
        times = []
        for _ in range(repeats):
            comm.barrier()
            t0 = time.perf_counter()
            reduce(x).block_until_ready()
            times.append(time.perf_counter() - t0)
        worst = comm.allgather_object(statistics.median(times))  # the slowest rank's median
        rows.append({"bytes": 8 * n, "median_s": max(worst), "min_s": min(times), "repeats": repeats})
        if comm.rank() == 0:
            print(f"{8 * n:>10d} B  median {max(worst) * 1e6:9.1f} us  min {min(times) * 1e6:9.1f} us", flush=True)
    if comm.rank() == 0:
        bytes_ = np.array([r["bytes"] for r in rows], float)
        t = np.array([r["median_s"] for r in rows])
        slope, alpha = np.polyfit(bytes_, t, 1) if len(rows) > 1 else (float("nan"), t[0])
        result = {
            "what": "jax.jit(distnqs.comm.sum) of a float64 vector (mpi4jax allreduce, MPI.SUM), per call",
            "ranks": comm.size(),
            "backend": jax.default_backend(),
            "rows": rows,
            "fit": {"latency_s": float(rows[0]["median_s"]), "latency_fit_s": float(alpha),
                    "bandwidth_bytes_per_s": float(1.0 / slope) if slope > 0 else None,
                    "model": "t(b) = latency + b / bandwidth, least squares over the medians; latency_s = the 8 B median"},
            "machine": f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} core(s) for this rank; "
                       "a machine shared with other jobs: timings are noisy",
            "jax": jax.__version__,
            "mpi": comm.mpi_info(),
            "command": "mpirun -np %d python benchmarks/bench_allreduce.py %s" % (comm.size(), " ".join(sys.argv[1:])),
        }
        if not args.smoke or args.out != str(RESULTS / "allreduce.json"):
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        fit = result["fit"]
        bw = fit["bandwidth_bytes_per_s"]
        print(f"latency {fit['latency_s'] * 1e6:.1f} us, bandwidth {bw / 1e9 if bw else float('nan'):.2f} GB/s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
