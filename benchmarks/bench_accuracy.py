"""Time to accuracy, distnqs against NetKet, on the same problem, ansatz, samples and cores.

Both codes optimize the same wave function (real RBM, the same alpha) on the same lattice and
Hamiltonian, with the same sampler (chains, sweep = N proposals, discarded sweeps, samples per
step), the same natural-gradient method and the same schedules, until a wall-time cap:

- distnqs: ``[optimizer] kind = "sgd", sr = true, solver = "minsr"`` (sample-space SR, Cholesky)
  with its defaults otherwise (look-up-table Metropolis and local energies, step guard on);
- NetKet: ``nk.driver.VMC_SR(..., use_ntk=True)`` (its minSR: the neural tangent kernel solved
  by ``cholesky_with_fallback``) with ``optax.sgd``; the diag shift follows the same geometric
  schedule (an optax schedule).

Each code runs in this one process, one after the other, on the whole machine (one process:
on a 2-core machine XLA uses both cores for either code; the MPI path of distnqs is not used
here, so that nothing but the code differs). The clock starts before the first step (so
compilation is included) and reads the wall time after every step, with the step's energy on
the host. The energy estimate is the mean of the per-step energies over the last ``--window``
steps (each step's energy is measured with the parameters before that step's update, in both
codes); a threshold ``r`` counts as reached at the first step where that running mean has
``|E - E_ref| / |E_ref| <= r``. With 1024 samples the statistical error of one step's E/N is a
few 1e-4 relative, of a 50-step window below 1e-4 (so the 1e-4 threshold is read near its noise).

Cases (energies per site, Pauli units):

- ``heisenberg6x6``: 6x6 periodic Heisenberg, S^z = 0, Marshall sign rule, exchange moves;
  exact E/N = -2.715488 (-0.678872 in S.S units, Sandvik PRB 56, 11678 (1997)).
- ``heisenberg6x6_symm``: the same problem with the translation-invariant RBM, alpha 16 (distnqs
  ``rbm_symm``, NetKet ``RBMSymm`` with the same initialization), SR in parameter space (dense S,
  Cholesky, ``VMC_SR(use_ntk=False)``): 593 parameters, fewer than the samples.
- ``tfim10x10``: 10x10 open TFIM at G = 3, local moves; reference from DMRG
  (``benchmarks/dmrg_reference.py``, value and bond dimension in ``distnqs/data/literature.json``).
- ``tfim10x10_symm``: the same problem with the RBM invariant under the open square's point group
  C4v (|G| = 8), 16 filters (distnqs ``rbm_symm``, NetKet ``RBMSymm`` with ``alpha`` = 16 |G| / N
  and the same initialization), dense SR in both: 1617 parameters, 128 hidden units.

    .venv/bin/python benchmarks/bench_accuracy.py --case heisenberg6x6 --time-cap 600

Writes benchmarks/results/accuracy_<case>.json (traces, time to each threshold, settings) and
docs/figures/accuracy_<case>.png (relative error against wall time; not committed, redrawn from the
JSON with --reanalyse).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import distnqs  # noqa: F401  (x64)
import jax
import jax.numpy as jnp
import netket as nk
import numpy as np
import optax

from distnqs import config
from distnqs.problem import build_problem
from distnqs.reference_data import literature

RESULTS = Path(__file__).resolve().parent / "results"
FIGURES = Path(__file__).resolve().parents[1] / "docs" / "figures"
THRESHOLDS = (1e-2, 3e-3, 1e-3, 1e-4)  # the issue asks for 1e-3 and 1e-4; the coarser two show the way there


def _reference(case: str) -> tuple[float, str]:
    lit = literature()
    if case.startswith("heisenberg6x6"):
        row = next(r for r in lit["heisenberg_square_pbc"] if r["L"] == 6)
        return 4.0 * row["E_per_site_S"], "exact, Sandvik PRB 56, 11678 (1997) (S.S units x 4)"
    row = next(r for r in lit["tfim_square_obc"] if r["L"] == 10 and r["G"] == 3.0)
    return row["E_per_site_P"], row["source"]


# Settings tried first, lr 0.03 with the diag shift decaying to 1e-3 (those of
# configs/minsr_heisenberg4x5.toml), drifted up from 1.6e-2 at step 100 and collapsed at step ~600
# on the 6x6 torus with 1024 samples; lr 0.01 with the shift held at >= 0.01 converges steadily.
CASES = {
    "heisenberg6x6": dict(model="heisenberg", L=6, pbc=True, alpha=2, sampler="exchange", lr=0.01,
                          diag_shift=0.1, diag_shift_final=0.01, diag_shift_steps=600),
    "tfim10x10": dict(model="tfim", L=10, pbc=False, G=3.0, alpha=1, sampler="local", lr=0.01,
                      diag_shift=0.1, diag_shift_final=0.01, diag_shift_steps=600),
    # the translation-invariant RBM (16 filters over the 36 translations, 593 parameters): distnqs
    # rbm_symm against netket.RBMSymm, the same function and initialization (normal, std 0.01; NetKet's
    # default 0.1 starts at an energy variance near 1e5). P < samples, so SR in parameter space
    # (S matrix, Cholesky) for both, each code's natural choice there.
    "heisenberg6x6_symm": dict(model="heisenberg", L=6, pbc=True, alpha=16, sampler="exchange", lr=0.01,
                               diag_shift=0.1, diag_shift_final=0.01, diag_shift_steps=600, ansatz="rbm_symm", solver="dense"),
    # the open lattice has no translations: its point group (8 elements), 16 filters, 1617 parameters
    "tfim10x10_symm": dict(model="tfim", L=10, pbc=False, G=3.0, alpha=16, sampler="local", lr=0.01,
                           diag_shift=0.1, diag_shift_final=0.01, diag_shift_steps=600, ansatz="rbm_symm", solver="dense",
                           symmetries="lattice"),
}


def _solver(case) -> str:
    return case.get("solver", "minsr")


def distnqs_trace(case, args, clock):
    """Run distnqs's jitted step until the time cap; yields (step, seconds, E/N)."""
    ham = ({"model": "tfim", "G": case["G"]} if case["model"] == "tfim"
           else {"model": "heisenberg", "total_sz": 0, "sign_rule": True})
    cfg = config.resolve({
        "seed": args.seed,
        "n_steps": 10**6,
        "lattice": {"Lx": case["L"], "Ly": case["L"], "pbc": case["pbc"]},
        "hamiltonian": ham,
        "ansatz": ({"model": "rbm", "alpha": case["alpha"]} if case.get("ansatz", "rbm") == "rbm"
                   else {"model": case["ansatz"], "alpha": case["alpha"], "symmetries": case.get("symmetries", "translations")}),
        "sampler": {"kind": f"metropolis_{case['sampler']}", "n_samples": args.n_samples,
                    "n_chains": args.n_chains, "n_discard": args.n_discard},
        "optimizer": {"kind": "sgd", "learning_rate": case["lr"], "sr": True, "solver": _solver(case),
                      "diag_shift": case["diag_shift"], "diag_shift_final": case["diag_shift_final"],
                      "diag_shift_steps": case["diag_shift_steps"]},
        "observables": {"magnetization": False},
        "run": {"reference": False},
    })
    N = case["L"] ** 2
    t0 = clock()
    problem = build_problem(cfg)
    params, opt_state, sampler_state = problem.init_state()
    step = problem.step.jit()
    t = 0
    while clock() - t0 < args.time_cap:
        params, opt_state, sampler_state, m = step(params, opt_state, sampler_state, jnp.asarray(t, jnp.int32))
        e = float(np.real(jax.device_get(m["energy"].mean))) / N
        yield t, clock() - t0, e
        t += 1


def netket_trace(case, args, clock):
    """NetKet 3.x VMC_SR (minSR / NTK) until the time cap; yields (step, seconds, E/N)."""
    N = case["L"] ** 2
    t0 = clock()
    g = nk.graph.Grid([case["L"], case["L"]], pbc=case["pbc"])
    if case["model"] == "tfim":
        hi = nk.hilbert.Spin(0.5, N)
        H = nk.operator.IsingJax(hi, g, h=case["G"], J=-1.0)
        sa = nk.sampler.MetropolisLocal(hi, n_chains=args.n_chains, sweep_size=N)
    else:
        hi = nk.hilbert.Spin(0.5, N, total_sz=0)
        H = nk.operator.Heisenberg(hi, g, sign_rule=True).to_jax_operator()
        sa = nk.sampler.MetropolisExchange(hi, graph=g, n_chains=args.n_chains, sweep_size=N)
    if case.get("ansatz", "rbm") == "rbm":
        model = nk.models.RBM(alpha=case["alpha"], param_dtype=float)
    else:  # RBMSymm's alpha is hidden units per site: alpha |G| / N for alpha filters (= alpha for the N translations)
        init = jax.nn.initializers.normal(0.01)
        group = g.translation_group() if case.get("symmetries", "translations") == "translations" else g.space_group()
        model = nk.models.RBMSymm(symmetries=group, alpha=case["alpha"] * len(group) / N, param_dtype=float,
                                  kernel_init=init, hidden_bias_init=init, visible_bias_init=init)
    vs = nk.vqs.MCState(sa, model, n_samples=args.n_samples,
                        n_discard_per_chain=args.n_discard, seed=args.seed, sampler_seed=args.seed + 1)
    # same geometric schedule as distnqs: d0 (d1/d0)^(min(t/T, 1))
    shift = optax.exponential_decay(case["diag_shift"], case["diag_shift_steps"],
                                    case["diag_shift_final"] / case["diag_shift"], end_value=case["diag_shift_final"])
    driver = nk.driver.VMC_SR(H, optax.sgd(case["lr"]), diag_shift=shift, variational_state=vs, use_ntk=_solver(case) == "minsr")
    out = []

    def callback(step, log_data, drv):
        # the driver's energy statistics of this step (VMC_SR has no public accessor for them)
        out.append((step, clock() - t0, float(np.real(drv._loss_stats.mean)) / N))
        return clock() - t0 < args.time_cap

    done = 0
    while clock() - t0 < args.time_cap:  # chunks, so that the traces stream to the caller
        driver.run(n_iter=50, out=None, show_progress=False, callback=callback)
        yield from out[done:]
        done = len(out)


def analyse(trace, e_ref, window):
    steps, secs, es = (np.asarray(x) for x in zip(*trace))
    window = min(window, len(es))  # a run shorter than the window: its mean over all steps
    run = np.convolve(es, np.ones(window) / window, mode="valid")  # run[k] = mean of es[k : k + window]
    rel = np.abs(run - e_ref) / abs(e_ref)
    reached = {}
    for thr in THRESHOLDS:
        hit = np.nonzero(rel <= thr)[0]
        reached[f"{thr:g}"] = None if hit.size == 0 else {"step": int(steps[hit[0] + window - 1]), "seconds": float(secs[hit[0] + window - 1])}
    return {
        "steps_done": int(steps[-1]) + 1,
        "seconds": float(secs[-1]),
        "median_s_per_step": float(np.median(np.diff(secs))),
        "final_window_energy": float(run[-1]),
        "final_relative_error": float(rel[-1]),
        "best_relative_error": float(rel.min()),
        "time_to": reached,
        "trace": {"step": steps.tolist(), "seconds": secs.tolist(), "energy_per_site": es.tolist()},
    }


def plot(out: dict, path: Path) -> None:
    """Relative error of the windowed energy against wall time, both codes, log-log."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    window = out["settings"]["window"]
    fig, ax = plt.subplots(figsize=(6, 4))
    for code in ("distnqs", "netket"):
        if code not in out:
            continue
        tr = out[code]["trace"]
        es, secs = np.asarray(tr["energy_per_site"]), np.asarray(tr["seconds"])
        w = min(window, len(es))
        run = np.convolve(es, np.ones(w) / w, mode="valid")
        ax.loglog(secs[w - 1:], np.abs(run - out["reference_E_per_site"]) / abs(out["reference_E_per_site"]), label=code)
    for thr in THRESHOLDS:
        ax.axhline(thr, color="grey", lw=0.5, ls="--")
    ax.set_xlabel("wall time (s, compilation included)")
    ax.set_ylabel(f"relative error of the {window}-step mean energy")
    ax.set_title(out["case"])
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", default="heisenberg6x6", choices=[*CASES, "all"])
    p.add_argument("--codes", nargs="+", default=["distnqs", "netket"], choices=["distnqs", "netket"])
    p.add_argument("--time-cap", type=float, default=600.0, help="wall seconds per code and case")
    p.add_argument("--n-samples", type=int, default=1024)
    p.add_argument("--n-chains", type=int, default=16)
    p.add_argument("--n-discard", type=int, default=8)
    p.add_argument("--window", type=int, default=50)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override case settings (lr, alpha, diag_shift, diag_shift_final, diag_shift_steps)")
    p.add_argument("--reanalyse", action="store_true",
                   help="recompute the thresholds from the traces in the JSON (same criterion) against the current "
                        "reference (distnqs/data/literature.json) and redraw the figure; runs nothing")
    args = p.parse_args(argv)
    if args.reanalyse:
        for name in (list(CASES) if args.case == "all" else [args.case]):
            path = RESULTS / f"accuracy_{name}.json"
            out = json.loads(path.read_text())
            out["reference_E_per_site"], out["reference_source"] = _reference(name)
            for code in ("distnqs", "netket"):
                if code in out:
                    tr = out[code]["trace"]
                    out[code] = analyse(list(zip(tr["step"], tr["seconds"], tr["energy_per_site"])), out["reference_E_per_site"], out["settings"]["window"])
            path.write_text(json.dumps(out) + "\n")
            plot(out, FIGURES / f"accuracy_{name}.png")
        return
    names = list(CASES) if args.case == "all" else [args.case]
    RESULTS.mkdir(exist_ok=True)
    tracers = {"distnqs": distnqs_trace, "netket": netket_trace}
    for name in names:
        case = dict(CASES[name])
        for kv in args.set:
            k, v = kv.split("=", 1)
            if k not in case:
                p.error(f"--set: unknown setting {k!r} (one of {', '.join(case)})")
            case[k] = type(case[k])(float(v)) if not isinstance(case[k], str) else v
        e_ref, source = _reference(name)
        res = {}
        for code in args.codes:
            trace = []
            for rec in tracers[code](case, args, time.perf_counter):
                trace.append(rec)
                if rec[0] % 100 == 0:
                    print(f"{name} {code} step {rec[0]} t {rec[1]:.0f}s E/N {rec[2]:.6f} rel {abs(rec[2] - e_ref) / abs(e_ref):.2e}", flush=True)
            res[code] = analyse(trace, e_ref, args.window)
            r = res[code]
            print(f"{name} {code}: {r['steps_done']} steps in {r['seconds']:.0f} s, final rel err {r['final_relative_error']:.2e}, "
                  + ", ".join(f"{k}: {v['seconds']:.0f} s" if v else f"{k}: not reached" for k, v in r["time_to"].items()), flush=True)
        out = {
            "case": name,
            "problem": case,
            "reference_E_per_site": e_ref,
            "reference_source": source,
            "settings": {"n_samples": args.n_samples, "n_chains": args.n_chains, "n_discard_sweeps": args.n_discard,
                         "sweep_size": case["L"] ** 2, "window": args.window, "time_cap_s": args.time_cap, "seed": args.seed,
                         "distnqs": f"sgd + {'minSR' if _solver(case) == 'minsr' else 'dense SR'} (Cholesky), look-up tables, step guard on (defaults)",
                         "netket": f"VMC_SR(use_ntk={_solver(case) == 'minsr'}), optax.sgd, cholesky_with_fallback (defaults)"},
            "criterion": f"first step at which the mean of the last {args.window} per-step energies is within the threshold (relative)",
            **res,
            "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, one process per code, run one after the other",
            "conditions": "shared machine (load not controlled); wall time includes compilation",
            "versions": {"jax": jax.__version__, "netket": nk.__version__, "distnqs": distnqs.__version__},
            "command": f"python benchmarks/bench_accuracy.py --case {name} --time-cap {args.time_cap:g} --codes {' '.join(args.codes)}"
                       + (f" --set {' '.join(args.set)}" if args.set else ""),
        }
        (RESULTS / f"accuracy_{name}.json").write_text(json.dumps(out) + "\n")
        plot(out, FIGURES / f"accuracy_{name}.png")


if __name__ == "__main__":
    main()
