"""distnqs against NetKet on identical problems (issue: performance harness).

For each case both codes get the same lattice, Hamiltonian, architecture and
parameter count, sampler settings (chains, sweep length, discarded sweeps,
samples per step) and optimizer / SR settings. distnqs runs with its defaults,
which for an RBM include the look-up-table Metropolis moves and local energies
(``[run] fast_update = true``, code ``distnqs``), and, with ``--fast-update
both`` (the default), also on the generic path (``fast_update = false``, code
``distnqs_generic``: a forward pass per proposal and per connected
configuration, like NetKet). The codes are run alternately in
one process, ``--repeats`` times each; each run compiles, then times
``--steps`` optimization steps. Reported: median seconds per step after
compilation, samples per second, compile time (first step), peak RSS of the
process, energy after the steps, and the ratio NetKet / distnqs.

    .venv/bin/python benchmarks/bench_vs_netket.py --case rbm_sr --steps 30
    .venv/bin/python benchmarks/bench_vs_netket.py --case all --fast-update both

Writes benchmarks/results/<case>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
from pathlib import Path

import distnqs  # noqa: F401  (x64)
import jax
import netket as nk
import numpy as np

from distnqs import config
from distnqs.problem import build_problem
from timing import time_distnqs_steps, time_netket_driver

RESULTS = Path(__file__).resolve().parent / "results"

CASES = {
    "rbm_sr": dict(model="tfim", L=10, sampler="local", optimizer="sgd", lr=0.01, sr=True),
    "rbm_adam": dict(model="tfim", L=10, sampler="local", optimizer="adam", lr=0.01, sr=False),
    "rbm_exchange_heisenberg": dict(model="heisenberg", L=10, sampler="exchange", optimizer="sgd", lr=0.01, sr=True),
}


def distnqs_config(case, n_samples, n_chains, n_discard, seed, fast_update=True):
    ham = {"model": "tfim", "G": 3.0} if case["model"] == "tfim" else {"model": "heisenberg", "total_sz": 0, "sign_rule": True}
    return config.resolve({
        "seed": seed,
        "n_steps": 10**6,
        "lattice": {"Lx": case["L"], "Ly": case["L"], "pbc": False},
        "hamiltonian": ham,
        "ansatz": {"model": "rbm", "alpha": 1},
        "sampler": {"kind": f"metropolis_{case['sampler']}", "n_samples": n_samples, "n_chains": n_chains, "n_discard": n_discard},
        "optimizer": {"kind": case["optimizer"], "learning_rate": case["lr"], "sr": case["sr"], "diag_shift": 0.01, "solver": "cg", "cg_tol": 1e-5},  # NetKet SR default: jax cg, tol 1e-5
        "observables": {"magnetization": False},
        "run": {"reference": False, "fast_update": fast_update},
    })


def run_distnqs(case, steps, n_samples, n_chains, n_discard, seed):
    """distnqs with look-up tables (``[run] fast_update = true``, the default)."""
    return time_distnqs_steps(build_problem(distnqs_config(case, n_samples, n_chains, n_discard, seed, True)), steps)


def run_distnqs_generic(case, steps, n_samples, n_chains, n_discard, seed):
    """distnqs on the generic path (``[run] fast_update = false``): forward passes, as NetKet."""
    return time_distnqs_steps(build_problem(distnqs_config(case, n_samples, n_chains, n_discard, seed, False)), steps)


def run_netket(case, steps, n_samples, n_chains, n_discard, seed):
    N = case["L"] ** 2
    g = nk.graph.Grid([case["L"], case["L"]], pbc=False)
    if case["model"] == "tfim":
        hi = nk.hilbert.Spin(0.5, N)
        H = nk.operator.IsingJax(hi, g, h=3.0, J=-1.0)
        sa = nk.sampler.MetropolisLocal(hi, n_chains=n_chains, sweep_size=N)
    else:
        hi = nk.hilbert.Spin(0.5, N, total_sz=0)
        H = nk.operator.Heisenberg(hi, g, sign_rule=True).to_jax_operator()
        sa = nk.sampler.MetropolisExchange(hi, graph=g, n_chains=n_chains, sweep_size=N)
    model = nk.models.RBM(alpha=1, param_dtype=float)
    vs = nk.vqs.MCState(sa, model, n_samples=n_samples, n_discard_per_chain=n_discard, seed=seed, sampler_seed=seed + 1)
    opt = nk.optimizer.Sgd(case["lr"]) if case["optimizer"] == "sgd" else nk.optimizer.Adam(case["lr"])
    if case["sr"]:
        driver = nk.driver.VMC(H, opt, variational_state=vs, preconditioner=nk.optimizer.SR(diag_shift=0.01))
    else:
        driver = nk.driver.VMC(H, opt, variational_state=vs)
    return time_netket_driver(driver, vs, steps)


def summarize(r, n_samples):
    """One run's record from :mod:`timing`'s result ``r``."""
    return {
        "median_s_per_step": r["s_per_step"],  # mean over the timed steps of one run; median over repeats below
        "samples_per_s": n_samples / r["s_per_step"],
        "compile_s": r["compile_s"],
        "energy_after_steps": r["energy"],
        "energy_error": r["energy_error"],
        "n_parameters": r["n_parameters"],
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", default="rbm_sr", choices=[*CASES, "all"])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--n-samples", type=int, default=1024)
    p.add_argument("--n-chains", type=int, default=16)
    p.add_argument("--n-discard", type=int, default=16)
    p.add_argument("--fast-update", default="both", choices=["true", "false", "both"],
                   help="distnqs path(s): look-up tables (true, code distnqs), generic forward passes (false, code distnqs_generic), or both")
    args = p.parse_args(argv)
    codes = [("netket", run_netket)]
    if args.fast_update in ("true", "both"):
        codes.append(("distnqs", run_distnqs))
    if args.fast_update in ("false", "both"):
        codes.append(("distnqs_generic", run_distnqs_generic))
    names = list(CASES) if args.case == "all" else [args.case]
    RESULTS.mkdir(exist_ok=True)
    for name in names:
        case = CASES[name]
        runs = {code: [] for code, _ in codes}
        for r in range(args.repeats):  # alternate, so drifts of a shared machine hit every code
            for code, fn in codes:
                runs[code].append(summarize(fn(case, args.steps, args.n_samples, args.n_chains, args.n_discard, seed=r), args.n_samples))
                print(f"{name} {code} repeat {r}: {runs[code][-1]['median_s_per_step']:.4f} s/step, E = {runs[code][-1]['energy_after_steps']:.4f}", flush=True)
        med = {code: float(np.median([x["median_s_per_step"] for x in v])) for code, v in runs.items()}
        spread = {code: [float(min(x["median_s_per_step"] for x in v)), float(max(x["median_s_per_step"] for x in v))] for code, v in runs.items()}
        others = [c for c in runs if c != "netket"]
        per_repeat = {c: [a["median_s_per_step"] / b["median_s_per_step"] for a, b in zip(runs["netket"], runs[c])] for c in others}
        # energy after the steps, NetKet against distnqs repeat by repeat: |difference| / combined error bar
        z = {c: [abs(a["energy_after_steps"] - b["energy_after_steps"]) / float(np.hypot(a["energy_error"], b["energy_error"])) for a, b in zip(runs["netket"], runs[c])] for c in others}
        out = {
            "case": name,
            "problem": case,
            "settings": {"steps": args.steps, "repeats": args.repeats, "n_samples": args.n_samples, "n_chains": args.n_chains, "n_discard_sweeps": args.n_discard, "sweep_size": case["L"] ** 2},
            "paths": {"distnqs": "[run] fast_update = true (look-up tables, the default)", "distnqs_generic": "[run] fast_update = false (forward passes)"},
            **runs,
            "median_s_per_step": med,
            "min_max_s_per_step": spread,
            "ratio_netket_over": {c: med["netket"] / med[c] for c in others},
            "ratio_per_repeat": per_repeat,
            "ratio_min_max": {c: [float(min(v)), float(max(v))] for c, v in per_repeat.items()},
            "energy_difference_in_error_bars": z,
            "peak_rss_mb_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "machine": f"{platform.machine()}, {jax.device_count()} x {jax.devices()[0].device_kind}, {len(__import__('os').sched_getaffinity(0))} cores",
            "conditions": "2-core machine shared with other users' jobs (load not controlled); codes alternated within one process",
            "versions": {"jax": jax.__version__, "netket": nk.__version__, "distnqs": distnqs.__version__},
            "command": f"python benchmarks/bench_vs_netket.py --case {name} --steps {args.steps} --repeats {args.repeats} --fast-update {args.fast_update}",
        }
        (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=2) + "\n")
        print(f"{name}: " + ", ".join(f"{c} {med[c]:.4f} s/step [{spread[c][0]:.4f}, {spread[c][1]:.4f}]" for c in runs)
              + "; NetKet / " + ", ".join(f"{c} {out['ratio_netket_over'][c]:.2f}" for c in others), flush=True)

if __name__ == "__main__":
    main()
