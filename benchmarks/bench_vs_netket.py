"""distnqs against NetKet on identical problems (issue: performance harness).

For each case both codes get the same lattice, Hamiltonian, architecture and
parameter count, sampler settings (chains, sweep length, discarded sweeps,
samples per step) and optimizer / SR settings. distnqs runs with its defaults,
which for an RBM include the look-up-table Metropolis moves and local energies
(``[run] fast_update``). The two are run alternately in
one process, ``--repeats`` times each; each run compiles, then times
``--steps`` optimization steps. Reported: median seconds per step after
compilation, samples per second, compile time (first step), peak RSS of the
process, energy after the steps, and the ratio NetKet / distnqs.

    .venv/bin/python benchmarks/bench_vs_netket.py --case rbm_sr --steps 30
    .venv/bin/python benchmarks/bench_vs_netket.py --case all

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


def distnqs_config(case, n_samples, n_chains, n_discard, seed):
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
        "run": {"reference": False},
    })


def run_distnqs(case, steps, n_samples, n_chains, n_discard, seed):
    return time_distnqs_steps(build_problem(distnqs_config(case, n_samples, n_chains, n_discard, seed)), steps)


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
    args = p.parse_args(argv)
    names = list(CASES) if args.case == "all" else [args.case]
    RESULTS.mkdir(exist_ok=True)
    for name in names:
        case = CASES[name]
        runs = {"netket": [], "distnqs": []}
        for r in range(args.repeats):  # alternate, so drifts of a shared machine hit both
            for code, fn in (("netket", run_netket), ("distnqs", run_distnqs)):
                runs[code].append(summarize(fn(case, args.steps, args.n_samples, args.n_chains, args.n_discard, seed=r), args.n_samples))
                print(f"{name} {code} repeat {r}: {runs[code][-1]['median_s_per_step']:.4f} s/step, E = {runs[code][-1]['energy_after_steps']:.4f}", flush=True)
        med = {code: float(np.median([x["median_s_per_step"] for x in v])) for code, v in runs.items()}
        # energy after the steps, NetKet against distnqs repeat by repeat: |difference| / combined error bar
        z = [abs(a["energy_after_steps"] - b["energy_after_steps"]) / float(np.hypot(a["energy_error"], b["energy_error"])) for a, b in zip(runs["netket"], runs["distnqs"])]
        out = {
            "case": name,
            "problem": case,
            "settings": {"steps": args.steps, "repeats": args.repeats, "n_samples": args.n_samples, "n_chains": args.n_chains, "n_discard_sweeps": args.n_discard, "sweep_size": case["L"] ** 2},
            "netket": runs["netket"],
            "distnqs": runs["distnqs"],
            "ratio_netket_over_distnqs": med["netket"] / med["distnqs"],
            "ratio_per_repeat": [a["median_s_per_step"] / b["median_s_per_step"] for a, b in zip(runs["netket"], runs["distnqs"])],
            "energy_difference_in_error_bars": z,
            "peak_rss_mb_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "machine": f"{platform.machine()}, {jax.device_count()} x {jax.devices()[0].device_kind}, {len(__import__('os').sched_getaffinity(0))} cores",
            "versions": {"jax": jax.__version__, "netket": nk.__version__, "distnqs": distnqs.__version__},
            "command": f"python benchmarks/bench_vs_netket.py --case {name} --steps {args.steps} --repeats {args.repeats}",
        }
        (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=2) + "\n")
        print(f"{name}: NetKet {med['netket']:.4f} s/step, distnqs {med['distnqs']:.4f} s/step, ratio {out['ratio_netket_over_distnqs']:.2f}; "
              f"energy differences {', '.join(f'{x:.1f}' for x in z)} error bars")


if __name__ == "__main__":
    main()
