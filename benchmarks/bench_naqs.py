"""Autoregressive sampling and VMC steps: distnqs NAQS against NetKet's
``FastARNNConv2D`` + ``ARDirectSampler`` (issues 4 and 5, cases 3 and 5).

Two measurements, each run in one process with the two codes alternating
(``--repeats`` rounds), so drifts of a shared machine hit both:

- ``sample``: seconds to draw ``--n-samples`` exact configurations on L x L
  (``--sizes``), distnqs cached (rolling per-layer caches, about one forward
  pass per configuration) and uncached (N forward passes), and NetKet's cached
  ``FastARNNConv2D`` sampled by ``ARDirectSampler``. Same depth (masked
  layers), width (channels) and kernel size. The two networks differ in
  layout: NetKet stacks masked convolutions in one stack (its last layer
  outputs the conditionals), distnqs uses the vertical/horizontal two-stack
  layers of the gated PixelCNN (no blind spot) with a 1x1 output layer, so
  at equal depth and width distnqs has somewhat more parameters (both
  counts are recorded).
- ``step``: one VMC step on the 10x10 open TFIM at G = 3 (direct sampling of
  ``--n-samples``, local energies, gradient, Adam), median seconds per step
  after compilation, and the energy after ``--steps`` steps of each code;
  distnqs with float64 layers and with ``dtype = "float32"`` layers
  (``--dtypes``; float64 conditionals and reductions either way).
- ``large``: the same step on 21x21 with a network of >= 100k parameters in
  both codes (case (5) of issue 5; few samples, since NetKet's local energies
  cost 442 forward passes of the whole network per sample).

- ``same``: case (3) with *one* network: distnqs' NAQS wrapped as a NetKet
  ``AbstractARNN`` (NetKet's driver, ``ARDirectSampler`` and forward-pass
  local energies) against distnqs, both from the same initial parameters, so
  the energies after the steps must agree within error bars.

distnqs computes the local energies from the cached layers of each sample
(only the cone below a flipped site is recomputed,
:mod:`distnqs.models.naqs_fast`); NetKet runs the network on every connected
configuration.

Both networks have real parameters and positive amplitudes (distnqs
``phase = false``, NetKet's float64 ARNN). Results:
``benchmarks/results/naqs_sampling.json``, ``naqs_step.json`` and ``naqs_step_21x21.json``.

    .venv/bin/python benchmarks/bench_naqs.py --what sample --sizes 10 21
    .venv/bin/python benchmarks/bench_naqs.py --what step --steps 10
    .venv/bin/python benchmarks/bench_naqs.py --what large --repeats 1
    .venv/bin/python benchmarks/bench_naqs.py --what same --steps 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path
from typing import Any

import distnqs  # noqa: F401  (x64 before jax)
import jax
import jax.numpy as jnp
import netket as nk
import numpy as np

from distnqs import config
from distnqs.models.naqs import NAQS
from distnqs.problem import build_problem
from timing import time_distnqs_steps, time_netket_driver

RESULTS = Path(__file__).resolve().parent / "results"


def _n_params(tree) -> int:
    return int(sum(x.size for x in jax.tree_util.tree_leaves(tree)))


def _best_of(fn, n: int) -> float:
    """Median wall seconds of ``n`` calls of ``fn`` (which blocks until its result is ready)."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def time_distnqs_sampling(L, depth, features, kernel, n_samples, cached, calls):
    module = NAQS(Lx=L, Ly=L, depth=depth, features=features, kernel_size=kernel, phase=False, output_scale=1.0)
    params = module.init(jax.random.PRNGKey(0), jnp.ones((1, L * L)))
    method = NAQS.sample_cached if cached else NAQS.sample_uncached
    draw = jax.jit(lambda p, k: module.apply(p, k, n_samples, method=method))
    t0 = time.perf_counter()
    jax.block_until_ready(draw(params, jax.random.PRNGKey(1)))
    compile_s = time.perf_counter() - t0
    keys = iter(jax.random.split(jax.random.PRNGKey(2), calls))
    seconds = _best_of(lambda: jax.block_until_ready(draw(params, next(keys))), calls)
    return {"seconds": seconds, "first_call_s": compile_s, "n_parameters": _n_params(params)}


def time_netket_sampling(L, depth, features, kernel, n_samples, calls):
    hi = nk.hilbert.Spin(0.5, L * L)
    model = nk.models.FastARNNConv2D(hilbert=hi, layers=depth, features=features, kernel_size=(kernel, kernel))
    vs = nk.vqs.MCState(nk.sampler.ARDirectSampler(hi), model, n_samples=n_samples, seed=0, sampler_seed=1)
    t0 = time.perf_counter()
    jax.block_until_ready(vs.sample())
    compile_s = time.perf_counter() - t0
    seconds = _best_of(lambda: jax.block_until_ready(vs.sample()), calls)
    return {"seconds": seconds, "first_call_s": compile_s, "n_parameters": int(vs.n_parameters)}


def bench_sampling(args):
    rows = []
    for L in args.sizes:
        runs = {"distnqs_cached": [], "distnqs_uncached": [], "netket_fast_arnn": []}
        for r in range(args.repeats):
            runs["netket_fast_arnn"].append(time_netket_sampling(L, args.depth, args.features, args.kernel, args.n_samples, args.calls))
            runs["distnqs_cached"].append(time_distnqs_sampling(L, args.depth, args.features, args.kernel, args.n_samples, True, args.calls))
            if r == 0 and L * L <= args.uncached_max_sites:  # N passes: slow, once is enough for the ratio
                runs["distnqs_uncached"].append(time_distnqs_sampling(L, args.depth, args.features, args.kernel, args.n_samples, False, 1))
            print(f"L={L} repeat {r}: " + ", ".join(f"{k} {v[-1]['seconds']:.3f} s" for k, v in runs.items() if v), flush=True)
        med = {k: float(np.median([x["seconds"] for x in v])) for k, v in runs.items() if v}
        row = {
            "L": L,
            "runs": runs,
            "median_seconds": med,
            "netket_over_distnqs_cached": med["netket_fast_arnn"] / med["distnqs_cached"],
            "ratio_per_repeat": [a["seconds"] / b["seconds"] for a, b in zip(runs["netket_fast_arnn"], runs["distnqs_cached"])],
        }
        if "distnqs_uncached" in med:
            row["uncached_over_cached"] = med["distnqs_uncached"] / med["distnqs_cached"]
        rows.append(row)
    return {
        "what": f"seconds to draw {args.n_samples} exact samples (one call, after compilation)",
        "architecture": {"depth": args.depth, "features": args.features, "kernel_size": args.kernel},
        "results": rows,
        "command": f"python benchmarks/bench_naqs.py --what sample --sizes {' '.join(map(str, args.sizes))} "
        f"--depth {args.depth} --features {args.features} --kernel {args.kernel} --repeats {args.repeats} --calls {args.calls}",
    }


def _step_problem(args, large: bool):
    """(L, depth, features, n_samples, steps) of the 10x10 case (3) or the 21x21 case (5)."""
    if large:
        return 21, args.large_depth, args.large_features, args.large_samples, args.large_steps
    return 10, args.depth, args.features, args.n_samples, args.steps


def run_distnqs_steps(args, seed, dtype="float64", large=False):
    L, depth, features, n_samples, steps = _step_problem(args, large)
    cfg = config.resolve({
        "seed": seed,
        "n_steps": 10**6,
        "lattice": {"Lx": L, "Ly": L, "pbc": False},
        "hamiltonian": {"model": "tfim", "G": 3.0},
        "ansatz": {"model": "naqs", "depth": depth, "features": features, "kernel_size": args.kernel, "phase": False, "activation": "selu", "dtype": dtype},
        "sampler": {"kind": "direct", "n_samples": n_samples},
        "optimizer": {"kind": "adam", "learning_rate": args.lr, "sr": False},
        "observables": {"magnetization": False},
        "run": {"reference": False},
    })
    return time_distnqs_steps(build_problem(cfg), steps)


def run_netket_steps(args, seed, large=False):
    L, depth, features, n_samples, steps = _step_problem(args, large)
    hi = nk.hilbert.Spin(0.5, L * L)
    H = nk.operator.IsingJax(hi, nk.graph.Grid([L, L], pbc=False), h=3.0, J=-1.0)
    model = nk.models.FastARNNConv2D(hilbert=hi, layers=depth, features=features, kernel_size=(args.kernel, args.kernel))
    vs = nk.vqs.MCState(nk.sampler.ARDirectSampler(hi), model, n_samples=n_samples, seed=seed, sampler_seed=seed + 1)
    driver = nk.driver.VMC(H, nk.optimizer.Adam(args.lr), variational_state=vs)
    return time_netket_driver(driver, vs, steps)


def _naqs_for_netket():
    """NetKet ``AbstractARNN`` around distnqs' NAQS module: NetKet's driver, sampler and local
    energies (a forward pass per connected configuration) run exactly distnqs' network."""

    class NAQSInNetKet(nk.models.AbstractARNN):
        net: Any = None  # a distnqs NAQS module
        machine_pow: int = 2

        def conditionals_log_psi(self, inputs):
            # NetKet's local index j is the state hilbert.local_states[j]; distnqs' index is (t + 1) / 2
            order = [(int(round(v)) + 1) // 2 for v in np.asarray(self.hilbert.local_states)]
            return self.net.conditionals(inputs)[..., np.asarray(order)]

    return NAQSInNetKet


def bench_same_network(args):
    """Case (3) with one network: distnqs' NAQS, identical initial parameters, in both codes."""
    runs = {"netket_same_network": [], "distnqs": []}
    for r in range(args.repeats):
        cfg = config.resolve({
            "seed": r, "n_steps": 10**6,
            "lattice": {"Lx": 10, "Ly": 10, "pbc": False},
            "hamiltonian": {"model": "tfim", "G": 3.0},
            "ansatz": {"model": "naqs", "depth": args.depth, "features": args.features, "kernel_size": args.kernel, "phase": False, "activation": "selu"},
            "sampler": {"kind": "direct", "n_samples": args.n_samples},
            "optimizer": {"kind": "adam", "learning_rate": args.lr, "sr": False},
            "observables": {"magnetization": False},
            "run": {"reference": False},
        })
        problem = build_problem(cfg)
        params0 = problem.init_state()[0]
        hi = nk.hilbert.Spin(0.5, 100)
        H = nk.operator.IsingJax(hi, nk.graph.Grid([10, 10], pbc=False), h=3.0, J=-1.0)
        model = _naqs_for_netket()(hilbert=hi, net=problem.ansatz.module)
        vs = nk.vqs.MCState(nk.sampler.ARDirectSampler(hi), model, n_samples=args.n_samples, seed=r, sampler_seed=r + 1)
        vs.parameters = {"net": params0}
        s = jnp.asarray(np.random.default_rng(0).choice([-1.0, 1.0], (4, 100)))
        assert np.allclose(np.asarray(vs.log_value(s)), np.asarray(problem.ansatz.log_psi(params0, s)), atol=1e-12)
        driver = nk.driver.VMC(H, nk.optimizer.Adam(args.lr), variational_state=vs)
        runs["netket_same_network"].append(time_netket_driver(driver, vs, args.steps))
        runs["distnqs"].append(time_distnqs_steps(problem, args.steps))
        for code in runs:
            x = runs[code][-1]
            print(f"same network {code} repeat {r}: {x['s_per_step']:.3f} s/step, E = {x['energy']:.3f} ± {x['energy_error']:.3f}", flush=True)
    med = {k: float(np.median([x["s_per_step"] for x in v])) for k, v in runs.items()}
    sigmas = [abs(a["energy"] - b["energy"]) / np.hypot(a["energy_error"], b["energy_error"]) for a, b in zip(runs["netket_same_network"], runs["distnqs"])]
    return {
        "what": f"one VMC step of distnqs' NAQS in NetKet (AbstractARNN wrapper, ARDirectSampler, forward-pass local energies) and in distnqs, "
        f"10x10 open TFIM G = 3, {args.n_samples} samples, Adam lr {args.lr}, the same initial parameters",
        "architecture": {"depth": args.depth, "features": args.features, "kernel_size": args.kernel, "activation": "selu"},
        "runs": runs,
        "median_s_per_step": med,
        "netket_over_distnqs": med["netket_same_network"] / med["distnqs"],
        "energy_difference_in_error_bars": sigmas,
        "command": f"python benchmarks/bench_naqs.py --what same --steps {args.steps} --repeats {args.repeats} "
        f"--depth {args.depth} --features {args.features} --kernel {args.kernel}",
    }


def bench_step(args, large=False):
    L, depth, features, n_samples, steps = _step_problem(args, large)
    codes = [("netket", lambda a, seed: run_netket_steps(a, seed, large))] + [
        ("distnqs" if d == "float64" else f"distnqs_{d}", lambda a, seed, d=d: run_distnqs_steps(a, seed, d, large)) for d in args.dtypes
    ]
    runs = {code: [] for code, _ in codes}
    for r in range(args.repeats):
        for code, fn in codes:
            runs[code].append(fn(args, seed=r))
            x = runs[code][-1]
            print(f"step {code} repeat {r}: {x['s_per_step']:.3f} s/step, E = {x['energy']:.3f} ± {x['energy_error']:.3f}", flush=True)
    med = {k: float(np.median([x["s_per_step"] for x in v])) for k, v in runs.items()}
    ratios = {f"netket_over_{k}": med["netket"] / med[k] for k in med if k != "netket"}
    per_repeat = {f"netket_over_{k}": [a["s_per_step"] / b["s_per_step"] for a, b in zip(runs["netket"], runs[k])] for k in runs if k != "netket"}
    flag = "--what large" if large else "--what step"
    sizes = (f"--large-depth {depth} --large-features {features} --large-samples {n_samples} --large-steps {steps}" if large
             else f"--depth {depth} --features {features} --n-samples {n_samples} --steps {steps}")
    return {
        "what": f"one VMC step, {L}x{L} open TFIM G = 3, {n_samples} direct samples, Adam lr {args.lr}",
        "architecture": {"depth": depth, "features": features, "kernel_size": args.kernel, "activation": "selu (NetKet's default)"},
        "local_energies": "distnqs: cones of the cached layers (distnqs/models/naqs_fast.py); NetKet: a forward pass per connected configuration",
        "runs": runs,
        "median_s_per_step": med,
        **ratios,
        "ratio_per_repeat": per_repeat,
        "command": f"python benchmarks/bench_naqs.py {flag} {sizes} --repeats {args.repeats} --kernel {args.kernel} --dtypes {' '.join(args.dtypes)}",
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--what", default="all", choices=["sample", "step", "large", "same", "all"])
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 21])
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--features", type=int, default=8)
    p.add_argument("--kernel", type=int, default=3)
    p.add_argument("--n-samples", type=int, default=1024)
    p.add_argument("--calls", type=int, default=3, help="timed sampling calls per run")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--large-depth", type=int, default=5, help="case (5): 21x21, >= 100k parameters in both codes")
    p.add_argument("--large-features", type=int, default=64)
    p.add_argument("--large-samples", type=int, default=32, help="few samples: a NetKet step costs 442 forward passes each")
    p.add_argument("--large-steps", type=int, default=2)
    p.add_argument("--dtypes", nargs="+", default=["float64", "float32"], choices=["float64", "float32"],
                   help="arithmetic of the distnqs layers (NAQS dtype); NetKet runs its float64 default")
    p.add_argument("--uncached-max-sites", type=int, default=441)
    args = p.parse_args(argv)
    RESULTS.mkdir(exist_ok=True)
    meta = {
        "machine": f"{platform.machine()}, {jax.device_count()} x {jax.devices()[0].device_kind}, {len(os.sched_getaffinity(0))} cores",
        "versions": {"jax": jax.__version__, "netket": nk.__version__, "distnqs": distnqs.__version__},
    }
    todo = [("sample", bench_sampling, "naqs_sampling"), ("step", bench_step, "naqs_step"),
            ("large", lambda a: bench_step(a, large=True), "naqs_step_21x21"), ("same", bench_same_network, "naqs_step_same_network")]
    for what, fn, name in todo:
        if args.what in (what, "all"):
            out = {**fn(args), **meta, "peak_rss_mb_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
            (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=2) + "\n")
            print(json.dumps({k: v for k, v in out.items() if k not in ("runs", "results")}, indent=1))
            for row in out.get("results", []):
                print(f"L={row['L']}: median s {row['median_seconds']}, NetKet/distnqs(cached) {row['netket_over_distnqs_cached']:.2f}")


if __name__ == "__main__":
    main()
