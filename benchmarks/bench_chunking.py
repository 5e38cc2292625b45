"""Chunked local energies on CPU: seconds per local-energy evaluation and per VMC step against the chunk size.

The generic local energy (a forward pass for every connected configuration) of the NAQS 4x4 open
Heisenberg case of ``configs/naqs/heisenberg4.toml`` (float32 layers, as tests/test_naqs_physics.py
runs it; 25 connections per sample, 1024 samples), in one process pinned to one core, for:
no chunks (all 25 600 configurations in one batch), the automatic choice
(``distnqs.operators.local_energy.auto_chunk_size``) and fixed chunks.
Every variant runs in this one process, one after the other, on the same samples and parameters;
medians of ``--repeats`` calls after one compiling call.

    python benchmarks/bench_chunking.py            # writes benchmarks/results/chunking.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--chunks", default="none,auto,2,8,32,128")
    ap.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "chunking.json"))
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core, before jax starts its pools

    import jax
    import jax.numpy as jnp

    import distnqs  # noqa: F401  (x64)
    from distnqs import config as config_mod
    from distnqs.operators.local_energy import auto_chunk_size, local_energy
    from distnqs.problem import build_problem

    sys.path.insert(0, str(REPO / "benchmarks"))
    from timing import time_distnqs_steps

    text = (REPO / "configs" / "naqs" / "heisenberg4.toml").read_text().replace("\n[ansatz]\n", '\n[ansatz]\ndtype = "float32"\n')
    rows = []
    for label in args.chunks.split(","):
        run_text = text
        if label not in ("auto", "none"):
            run_text = re.sub(r"\n\[run\]\n", f"\n[run]\nchunk_size = {int(label)}\n", run_text)
        elif label == "none":
            run_text = re.sub(r"\n\[run\]\n", "\n[run]\nchunk_size = 1024\n", run_text)  # one chunk of all samples
        problem = build_problem(config_mod.parse(run_text))
        params, _, sampler_state = problem.init_state()
        st = problem.step
        samples, _ = jax.jit(lambda p, s: st.sampler.sample(problem.ansatz.log_psi, p, s, jax.random.PRNGKey(0)))(params, sampler_state)
        flat = samples.reshape(-1, samples.shape[-1])
        fn = jax.jit(lambda p, x: local_energy(problem.ansatz.log_psi, p, st.hamiltonian, x, None, st.chunk_size, st.fast_update))
        fn(params, flat).block_until_ready()
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fn(params, flat).block_until_ready()
            times.append(time.perf_counter() - t0)
        step = time_distnqs_steps(problem, args.repeats)
        chunk = st.chunk_size if label != "auto" else auto_chunk_size(st.hamiltonian.max_conn_size)
        rows.append({"chunk": label, "samples_per_chunk": chunk, "local_energy_s": statistics.median(times),
                     "local_energy_s_min": min(times), "local_energy_s_max": max(times), "step_s": step["s_per_step"]})
        print(f"chunk {label:>5} ({chunk} samples): local energy {rows[-1]['local_energy_s']:.3f} s, step {step['s_per_step']:.3f} s", flush=True)
    base = rows[0]
    for r in rows:
        r["step_speedup_vs_first"] = base["step_s"] / r["step_s"]
    out = {
        "what": "NAQS 4x4 open Heisenberg (configs/naqs/heisenberg4.toml, float32 layers), 1024 samples, generic local energy, one process on one core",
        "how": f"medians of {args.repeats} calls after a compiling one; VMC step = mean of {args.repeats} steps; all variants in one process",
        "machine": {"cpu": platform.processor() or platform.machine(), "cores_used": 1, "jax": jax.__version__},
        "rows": rows,
    }
    Path(args.output).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
