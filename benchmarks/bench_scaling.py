"""Scaling of one RBM VMC step over MPI ranks, and peak memory against n_samples.

``scaling``: the rbm_sr problem of bench_vs_netket.py (RBM alpha=1, 10x10 open
TFIM at G=3, Metropolis local moves, SGD + SR with CG) under ``mpirun -np p``:

- weak scaling: fixed samples (and chains) per rank, efficiency ``T_1 / T_p``.
  The CG solve runs a fixed number of products (``--cg-iterations``, 40 = what
  tolerance 1e-5 takes at 1024 samples): to a tolerance, it takes more
  iterations the more samples there are in total (S has rank <= n_samples;
  49-52 at 2048 against 40 at 1024), which is more work, not a parallel loss;
- strong scaling: fixed total samples, efficiency ``T_1 / (p T_p)``;
- control: ``p`` independent single-rank runs of the weak per-rank work at
  the same time (no MPI), which separates what sharing the machine costs
  (``T_1 / T_indep``: memory bandwidth, shared caches, clocks) from what the
  communication costs (``T_indep / T_p``).

Every rank is pinned to ``--cores-per-rank`` cores (``distnqs.launch`` does it
under mpirun; the single-rank run is pinned the same way), so the ranks do not
share cores. Also reported per step: the allreduces and bytes reduced (gradient
``8 P`` bytes, ``<O>`` of ``8 P`` bytes once per step, one ``S v`` of ``8 P``
bytes per CG matrix-vector product, the energy statistics, the acceptance), and the
projected time of those allreduces at 64 ranks on a 100 Gb/s network with the
ring-allreduce model ``2 (p-1)/p * bytes / bandwidth + latency * log2 p``,
against the measured compute time of a step.

``memory``: peak resident memory of one process after a few steps against
``n_samples`` (64 samples per chain), with and without ``[run] chunk_size``,
for the forward-pass (generic) estimators and the look-up-table ones.

    .venv/bin/python benchmarks/bench_scaling.py scaling --ranks 1 2 --steps 10
    .venv/bin/python benchmarks/bench_scaling.py memory --samples 1024 4096 16384 --chunk-sizes 0 512

Writes benchmarks/results/scaling.json and benchmarks/results/memory.json.
Timings on a shared machine are noisy; the byte counts and the projection are not.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
BIN = Path(sys.executable).parent


def problem_config(n_samples, n_chains, chunk_size=0, fast_update=True, seed=0, cg_iterations=0):
    """The rbm_sr problem; ``cg_iterations > 0``: exactly that many CG products (tolerance 0), else tol 1e-5."""
    cg = {"cg_tol": 0.0, "cg_maxiter": cg_iterations} if cg_iterations > 0 else {"cg_tol": 1e-5}
    return {
        "seed": seed,
        "n_steps": 10**6,
        "lattice": {"Lx": 10, "Ly": 10, "pbc": False},
        "hamiltonian": {"model": "tfim", "G": 3.0},
        "ansatz": {"model": "rbm", "alpha": 1},
        "sampler": {"kind": "metropolis_local", "n_samples": n_samples, "n_chains": n_chains, "n_discard": 16},
        "optimizer": {"kind": "sgd", "learning_rate": 0.01, "sr": True, "diag_shift": 0.01, "solver": "cg", **cg},
        "observables": {"magnetization": False},
        "run": {"reference": False, "chunk_size": chunk_size, "fast_update": fast_update},
    }


def count_cg_matvecs(problem, params, sampler_state, step_index):
    """S.v products of the CG solve at one step (a host callback counts them)."""
    import jax
    import jax.numpy as jnp

    from distnqs import comm
    from distnqs.estimators import energy_gradient
    from distnqs.estimators.qgt import qgt_matvec

    step, sr = problem.step, problem.optimizer.sr
    log_psi = problem.ansatz.log_psi
    count = [0]

    def solve(params, sampler_state):
        samples, _ = step.sampler.sample(log_psi, params, sampler_state, comm.step_key(step.seed, step_index))
        flat, e_loc, metrics = step.estimate(params, samples)
        grad = energy_gradient(log_psi, params, flat, e_loc, metrics["energy"].mean, step.n_samples_total, step.chunk_size)

        def matvec(v):
            jax.debug.callback(lambda: count.__setitem__(0, count[0] + 1))
            Sv = qgt_matvec(log_psi, params, flat, v, step.n_samples_total, sr.chunk_size)
            return jax.tree_util.tree_map(lambda a, b: a + sr.shift(step_index) * b, Sv, v)

        x, _ = jax.scipy.sparse.linalg.cg(matvec, grad, tol=sr.cg_tol, maxiter=sr.cg_maxiter)
        return x

    jax.block_until_ready(jax.jit(solve)(params, sampler_state))
    jax.effects_barrier()
    return count[0], jnp.iscomplexobj(log_psi(params, sampler_state.sigma[:1]))


def worker(args):
    """One measurement inside mpirun (or alone); rank 0 prints one JSON line."""
    import resource

    import distnqs  # noqa: F401  (pinning and x64 before jax)
    import jax
    import jax.numpy as jnp

    from distnqs import comm, config
    from distnqs.models import n_parameters
    from distnqs.problem import build_problem

    cfg = config.resolve(problem_config(args.n_samples, args.n_chains, args.chunk_size, not args.no_fast_update, cg_iterations=args.cg_iterations))
    problem = build_problem(cfg)
    params, opt_state, sampler_state = problem.init_state()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    step = problem.step.jit()
    t0 = time.perf_counter()
    params, opt_state, sampler_state, m = step(params, opt_state, sampler_state, jnp.asarray(0, jnp.int32))
    jax.device_get(m)
    compile_s = time.perf_counter() - t0
    times = []
    for t in range(1, args.steps + 1):
        t0 = time.perf_counter()
        params, opt_state, sampler_state, m = step(params, opt_state, sampler_state, jnp.asarray(t, jnp.int32))
        jax.device_get(m)
        times.append(time.perf_counter() - t0)
    out = {
        "ranks": comm.size(),
        "n_samples_total": problem.step.n_samples_total,
        "n_samples_per_rank": problem.step.n_samples_local,
        "n_chains_per_rank": problem.sampler.n_chains,
        "chunk_size": args.chunk_size,
        "fast_update": not args.no_fast_update,
        "n_parameters": n_parameters(params),
        "compile_s": compile_s,
        "median_s_per_step": sorted(times)[len(times) // 2] if times else None,
        "mean_s_per_step": sum(times) / len(times) if times else None,
        "energy": float(jnp.real(m["energy"].mean)),
        "energy_error": float(m["energy"].error_of_mean),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_mb_before_first_step": rss_before,
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
    }
    if args.count_cg:
        out["cg_matvecs"], out["complex"] = count_cg_matvecs(problem, params, sampler_state, args.steps + 1)
        out["n_samples_per_chain"] = problem.sampler.n_samples_per_chain
    if comm.rank() == 0:
        print("RESULT " + json.dumps(out), flush=True)


def _launch(n_ranks, worker_args, cores_per_rank, timeout):
    env = dict(os.environ)
    for var in ("_DISTNQS_CONFIGURED", "DISTNQS_NO_MPI"):
        env.pop(var, None)
    cmd = [sys.executable, __file__, "_worker", *map(str, worker_args)]
    if n_ranks == 1:
        # pin the lone rank as distnqs.launch pins each of several ranks
        cores = sorted(os.sched_getaffinity(0))[:cores_per_rank]
        env["XLA_FLAGS"] = f"--xla_cpu_multi_thread_eigen={'true' if len(cores) > 1 else 'false'} intra_op_parallelism_threads={len(cores)}"
        env["DISTNQS_NO_MPI"] = "1"
        cmd = ["taskset", "-c", ",".join(map(str, cores)), *cmd]
    else:
        env.pop("XLA_FLAGS", None)
        cmd = [str(BIN / "mpirun"), "-np", str(n_ranks), *cmd]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")


def _launch_independent(n_procs, worker_args, cores_per_rank, timeout):
    """``n_procs`` single-rank runs at once, each pinned to its own cores (no MPI between them).

    The control of weak scaling: what sharing the machine costs without any communication
    (memory bandwidth, shared caches, clock). Returns the slowest run's result.
    """
    env = dict(os.environ)
    for var in ("_DISTNQS_CONFIGURED",):
        env.pop(var, None)
    env["DISTNQS_NO_MPI"] = "1"
    env["XLA_FLAGS"] = f"--xla_cpu_multi_thread_eigen={'true' if cores_per_rank > 1 else 'false'} intra_op_parallelism_threads={cores_per_rank}"
    all_cores = sorted(os.sched_getaffinity(0))
    procs = []
    for i in range(n_procs):
        cores = all_cores[i * cores_per_rank : (i + 1) * cores_per_rank]
        cmd = ["taskset", "-c", ",".join(map(str, cores)), sys.executable, __file__, "_worker", *map(str, worker_args)]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        rows = [json.loads(l[len("RESULT "):]) for l in out.splitlines() if l.startswith("RESULT ")]
        if not rows:
            raise RuntimeError(f"independent run failed:\n{err[-3000:]}")
        results.append(rows[0])
    return max(results, key=lambda r: r["median_s_per_step"])


def allreduce_model(n_bytes, ranks, bandwidth_bytes_s, latency_s):
    """Ring allreduce time: ``2 (p-1)/p * bytes / bandwidth + latency * log2 p``."""
    if ranks <= 1:
        return 0.0
    return 2 * (ranks - 1) / ranks * n_bytes / bandwidth_bytes_s + latency_s * math.log2(ranks)


def reductions_per_step(n_params, cg_matvecs, n_per_chain, complex_log_psi):
    """(name, count, bytes each) of the allreduces of one SR step (see distnqs.step / estimators)."""
    scalar = 16 if complex_log_psi else 8
    return [
        ("energy statistics: mean, variance, 3 split-R-hat sums", 5, scalar),
        ("energy autocorrelation (chain-summed autocovariance)", 1, 8 * n_per_chain),
        ("gradient", 1, 8 * n_params),
        ("<O> for the S.v means (once per step; twice for a complex log psi)", 2 if complex_log_psi else 1, 8 * n_params),
        ("S.v: parameter-sized vector", cg_matvecs, 8 * n_params),
        ("acceptance counters", 1, 16),
    ]


def scaling(args):
    results = {"weak": [], "strong": [], "independent": []}
    samples, chains = args.samples_per_rank, args.chains_per_rank
    for p in args.ranks:
        for _ in range(args.repeats):
            cg = ["--cg-iterations", args.cg_iterations]
            if p > 1:  # control: p unconnected single-rank runs of the weak per-rank work, at once
                alone = _launch_independent(p, ["--n-samples", samples, "--n-chains", chains, "--steps", args.steps, *cg], args.cores_per_rank, args.timeout)
                results["independent"].append(alone | {"ranks": p})
                print(f"p={p}: {p} independent single-rank runs at once {alone['median_s_per_step']:.4f} s/step", flush=True)
            weak = _launch(p, ["--n-samples", samples * p, "--n-chains", chains * p, "--steps", args.steps, *cg] + (["--count-cg"] if p == 1 else []), args.cores_per_rank, args.timeout)
            strong = _launch(p, ["--n-samples", samples, "--n-chains", chains, "--steps", args.steps, *cg], args.cores_per_rank, args.timeout)
            results["weak"].append(weak)
            results["strong"].append(strong)
            print(f"p={p}: weak {weak['median_s_per_step']:.4f} s/step ({weak['n_samples_total']} samples), strong {strong['median_s_per_step']:.4f} s/step ({strong['n_samples_total']} samples)", flush=True)

    def median_time(rows, p):
        ts = sorted(r["median_s_per_step"] for r in rows if r["ranks"] == p)
        return ts[len(ts) // 2]

    t1_weak, t1_strong = median_time(results["weak"], 1), median_time(results["strong"], 1)
    efficiency = {
        "weak": {p: t1_weak / median_time(results["weak"], p) for p in args.ranks},
        "strong": {p: t1_strong / (p * median_time(results["strong"], p)) for p in args.ranks},
        # weak = (machine sharing: T_1 / T_independent) x (communication: T_independent / T_p)
        "weak_without_communication": {p: t1_weak / median_time(results["independent"], p) for p in args.ranks if p > 1},
        "communication": {p: median_time(results["independent"], p) / median_time(results["weak"], p) for p in args.ranks if p > 1},
    }
    single = next(r for r in results["weak"] if r["ranks"] == 1 and "cg_matvecs" in r)
    terms = reductions_per_step(single["n_parameters"], single["cg_matvecs"], single["n_samples_per_chain"], single["complex"])
    bandwidth = args.bandwidth_gbit * 1e9 / 8
    latency = args.latency_us * 1e-6
    projection = {}
    for p in sorted(set(args.project_ranks) | set(args.ranks)):
        t = sum(count * allreduce_model(nbytes, p, bandwidth, latency) for _, count, nbytes in terms)
        projection[p] = {"allreduce_s_per_step": t, "fraction_of_compute": t / t1_weak}
    out = {
        "problem": "RBM alpha=1, 10x10 open TFIM G=3, Metropolis local (16 chains/rank), SGD + SR (CG, diag_shift 0.01)"
        + (f", exactly {args.cg_iterations} CG products per step" if args.cg_iterations else ", CG tol 1e-5"),
        "settings": vars(args) | {"func": None},
        "runs": results,
        "efficiency": efficiency,
        "compute_s_per_step_one_rank": t1_weak,
        "reductions_per_step": [{"what": w, "count": c, "bytes_each": b} for w, c, b in terms],
        "allreduces_per_step": sum(c for _, c, _ in terms),
        "bytes_reduced_per_step": sum(c * b for _, c, b in terms),
        "network_model": f"ring allreduce, {args.bandwidth_gbit} Gb/s, {args.latency_us} us per hop: 2(p-1)/p*bytes/bandwidth + latency*log2(p)",
        "projected": projection,
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores; timings taken while other jobs shared the machine",
        "command": "python benchmarks/bench_scaling.py " + " ".join(sys.argv[1:]),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scaling.json").write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(json.dumps({"efficiency": efficiency, "bytes_reduced_per_step": out["bytes_reduced_per_step"], "projected": projection}, indent=2, default=str))


def memory(args):
    rows = []
    for fast in (False, True):
        for n in args.samples:
            for chunk in args.chunk_sizes:
                worker_args = ["--n-samples", n, "--n-chains", max(1, n // 64), "--steps", args.steps, "--chunk-size", chunk]
                r = _launch(1, worker_args + ([] if fast else ["--no-fast-update"]), args.cores_per_rank, args.timeout)
                rows.append({k: r[k] for k in ("n_samples_total", "chunk_size", "fast_update", "peak_rss_mb", "rss_mb_before_first_step", "median_s_per_step")})
                print(f"fast_update={fast} n_samples={n} chunk_size={chunk}: peak RSS {r['peak_rss_mb']:.0f} MB (before the first step {r['rss_mb_before_first_step']:.0f} MB)", flush=True)
    out = {
        "problem": "RBM alpha=1, 10x10 open TFIM G=3, Metropolis local (64 samples per chain), SGD + SR (CG); one process",
        "rows": rows,
        "note": "chunk_size 0 = no chunking; fast_update = look-up-table local energies (chunked internally to stay in cache)",
        "command": "python benchmarks/bench_scaling.py " + " ".join(sys.argv[1:]),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "memory.json").write_text(json.dumps(out, indent=2) + "\n")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("scaling")
    s.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    s.add_argument("--samples-per-rank", type=int, default=1024)
    s.add_argument("--chains-per-rank", type=int, default=16)
    s.add_argument("--steps", type=int, default=10)
    s.add_argument("--repeats", type=int, default=1)
    s.add_argument("--cores-per-rank", type=int, default=1)
    s.add_argument("--cg-iterations", type=int, default=40,
                   help="fixed CG products per step (0: tolerance 1e-5, whose iteration count grows with the total samples)")
    s.add_argument("--project-ranks", type=int, nargs="+", default=[64])
    s.add_argument("--bandwidth-gbit", type=float, default=100.0)
    s.add_argument("--latency-us", type=float, default=2.0)
    s.add_argument("--timeout", type=int, default=1200)
    s.set_defaults(func=scaling)
    m = sub.add_parser("memory")
    m.add_argument("--samples", type=int, nargs="+", default=[1024, 4096, 16384])
    m.add_argument("--chunk-sizes", type=int, nargs="+", default=[0, 512])
    m.add_argument("--steps", type=int, default=2)
    m.add_argument("--cores-per-rank", type=int, default=2)
    m.add_argument("--timeout", type=int, default=1200)
    m.set_defaults(func=memory)
    w = sub.add_parser("_worker")
    w.add_argument("--n-samples", type=int, required=True)
    w.add_argument("--n-chains", type=int, required=True)
    w.add_argument("--steps", type=int, default=10)
    w.add_argument("--chunk-size", type=int, default=0)
    w.add_argument("--no-fast-update", action="store_true")
    w.add_argument("--count-cg", action="store_true")
    w.add_argument("--cg-iterations", type=int, default=0)
    w.set_defaults(func=worker)
    args = p.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
