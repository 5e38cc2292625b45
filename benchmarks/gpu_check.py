"""Seconds per VMC step of a distnqs config on this process's device (used by gpu_check.sh).

    python benchmarks/gpu_check.py configs/naqs/tfim12_G3.0.toml --dtype float32 --steps 5 --out R.json
    python benchmarks/gpu_check.py configs/naqs/tfim12_G3.0.toml --smoke      # 1 step, 16 samples, tiny net (CPU check)

Under ``mpirun -np N`` every rank runs its share of the samples and rank 0 writes the result.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import distnqs  # noqa: F401,E402  (pinning and x64 before jax)
import jax  # noqa: E402

from distnqs import comm, config  # noqa: E402
from distnqs.problem import build_problem  # noqa: E402
from timing import time_distnqs_steps  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config")
    p.add_argument("--dtype", choices=["float64", "float32"], default=None, help="NAQS layer arithmetic")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--n-samples", type=int, default=None)
    p.add_argument("--smoke", action="store_true", help="1 step, 16 samples, depth 2 / 4 channels")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    cfg = config.load(args.config)
    if args.dtype and cfg["ansatz"]["model"] == "naqs":
        cfg["ansatz"]["dtype"] = args.dtype
    if args.n_samples:
        cfg["sampler"]["n_samples"] = args.n_samples
    steps = args.steps
    if args.smoke:
        steps = 1
        cfg["sampler"]["n_samples"] = 16
        if "n_chains" in cfg["sampler"]:
            cfg["sampler"]["n_chains"] = 2 * comm.size()
        if cfg["ansatz"]["model"] == "naqs":
            cfg["ansatz"].update(depth=2, features=4)
        cfg["run"]["chunk_size"] = 0
    cfg["run"]["reference"] = False
    cfg = config.resolve(cfg)
    result = time_distnqs_steps(build_problem(cfg), steps)
    result.update(config=args.config, dtype=args.dtype, steps=steps, ranks=comm.size(), smoke=args.smoke,
                  n_samples=cfg["sampler"]["n_samples"], backend=jax.default_backend(),
                  devices=[str(d) for d in jax.local_devices()], jax=jax.__version__)
    if comm.rank() == 0:
        print(json.dumps(result), flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
