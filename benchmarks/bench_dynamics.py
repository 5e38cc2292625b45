"""t-VMC: distnqs ``evolve`` against NetKet 3.23's ``netket.experimental.TDVP`` on the same quench.

Both codes evolve the same initial state (all spins along +x, the exact RBM
preparation of :func:`distnqs.dynamics.evolve.plus_x_params`, loaded into
``netket.models.RBM`` with the same parameters) under the same Hamiltonian
(periodic Lx x Ly TFIM, J = 1, G after the quench), with the same ansatz
(complex RBM, alpha = 1, float64/complex128), the same Metropolis local
sampler settings (chains, sweep = N proposals, discarded sweeps, samples per
evaluation), the same integrator (RK4, fixed dt) and the same regularization
(diagonal shift, dense Cholesky solve). Each code's best configuration:
distnqs with its defaults (look-up-table moves and local energies; real-view
S from a dense Jacobian); NetKet with ``QGTJacobianDense(holomorphic=True)``
(the RBM is holomorphic) and ``solver.cholesky``, ``IsingJax``.
The codes alternate within one process, ``--repeats`` times each. Reported:
seconds per unit of simulated time after compilation (the first dt is timed
separately and counted as compilation), median and min/max over repeats, and
the error of :math:`\\langle\\sigma^x\\rangle` and :math:`\\langle\\sigma^z\\sigma^z\\rangle`
against the exact evolution (``expm_multiply``) at the final time, with the
statistical error of that estimate.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_dynamics.py --L 3 --t-final 0.2 --repeats 3

Set ``OPENBLAS_NUM_THREADS=1`` on a shared machine: jax's CPU Cholesky / eigh go through
scipy's OpenBLAS, whose threads busy-wait when another job holds the other cores (measured here:
a 198 x 198 Cholesky took 250 ms with the default threads and 0.8 ms with one). The variable
is recorded in the result.

Writes benchmarks/results/dynamics_tfim<L>x<L>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path

import distnqs  # noqa: F401  (x64)
import jax
import jax.numpy as jnp
import netket as nk
import netket.experimental as nkx
import numpy as np

from distnqs import config
from distnqs.dynamics.evolve import EvolveJob
from distnqs.dynamics.exact import exact_evolution
from distnqs.models.base import from_real

RESULTS = Path(__file__).resolve().parent / "results"


def distnqs_config(args, seed):
    return config.resolve({
        "seed": seed,
        "lattice": {"kind": "square", "Lx": args.L, "Ly": args.L, "pbc": True},
        "hamiltonian": {"model": "tfim", "G": args.G},
        "ansatz": {"model": "rbm", "alpha": 1, "param_dtype": "complex128"},
        "sampler": {"kind": "metropolis_local", "n_samples": args.n_samples, "n_chains": args.n_chains, "n_discard": args.n_discard},
        "observables": {"magnetization": False},
        "run": {"reference": False, "eval_steps": 2},
        "dynamics": {"t_final": args.t_final, "dt": args.dt, "integrator": "rk4", "diag_shift": args.diag_shift,
                     "solver": "dense", "exact": False},
    })


def run_distnqs(args, seed):
    job = EvolveJob(distnqs_config(args, seed))
    params, istate, sampler_state = job.init_state()
    step = job.step_fn()
    n_steps = job.n_steps
    t0 = time.perf_counter()
    params, istate, sampler_state, m = step(params, istate, sampler_state, jnp.asarray(0, jnp.int32))
    jax.device_get(m)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for k in range(1, n_steps):
        params, istate, sampler_state, m = step(params, istate, sampler_state, jnp.asarray(k, jnp.int32))
        m = jax.device_get(m)  # the driver reads every step's metrics too
    seconds = time.perf_counter() - t0
    obs = job.final_observables(params, sampler_state)
    return {
        "s_per_unit_time": seconds / ((n_steps - 1) * args.dt),
        "first_step_s": first,
        "sx": obs["sx"]["mean"], "sx_error": obs["sx"]["error"],
        "szsz": obs["szsz"]["mean"], "szsz_error": obs["szsz"]["error"],
        "energy": obs["energy"]["mean"], "energy_error": obs["energy"]["error"],
        "initial_params": job.initial_params(),
    }


def run_netket(args, seed, initial_params):
    N = args.L**2
    g = nk.graph.Grid([args.L, args.L], pbc=True)
    hi = nk.hilbert.Spin(0.5, N)
    H = nk.operator.IsingJax(hi, g, h=args.G, J=-1.0)
    sa = nk.sampler.MetropolisLocal(hi, n_chains=args.n_chains, sweep_size=N)
    model = nk.models.RBM(alpha=1, param_dtype=complex)
    n_per_chain = args.n_samples // args.n_chains
    vs = nk.vqs.MCState(sa, model, n_samples=args.n_samples, n_discard_per_chain=args.n_discard, seed=seed, sampler_seed=seed + 1)
    p = from_real(initial_params)
    vs.parameters = {"Dense": {"kernel": jnp.asarray(p["kernel"]), "bias": jnp.asarray(p["hidden_bias"])}, "visible_bias": jnp.asarray(p["visible_bias"])}
    assert vs.chain_length == n_per_chain
    qgt = nk.optimizer.qgt.QGTJacobianDense(holomorphic=True, diag_shift=args.diag_shift)
    driver = nkx.TDVP(H, vs, nkx.dynamics.RK4(dt=args.dt), qgt=qgt, linear_solver=nk.optimizer.solver.cholesky)
    t0 = time.perf_counter()
    driver.run(args.dt, out=None, show_progress=False)
    jax.block_until_ready(vs.parameters)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    driver.run(args.t_final - args.dt, out=None, show_progress=False)
    jax.block_until_ready(vs.parameters)
    seconds = time.perf_counter() - t0
    sx = sum(nk.operator.spin.sigmax(hi, i) for i in range(N)) * (1.0 / N)
    pairs = [(int(i), int(j)) for i, j in g.edges()]
    zz = sum(nk.operator.spin.sigmaz(hi, i) @ nk.operator.spin.sigmaz(hi, j) for i, j in pairs) * (1.0 / len(pairs))
    vs.n_samples = args.n_samples * 2  # the same number of evaluation samples as distnqs' eval_steps = 2
    out = {"s_per_unit_time": seconds / (args.t_final - args.dt), "first_step_s": first}
    for name, op in (("sx", sx), ("szsz", zz), ("energy", H)):
        e = vs.expect(op)
        out[name], out[f"{name}_error"] = float(np.real(e.mean)), float(e.error_of_mean)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--L", type=int, default=3)
    p.add_argument("--G", type=float, default=1.0)
    p.add_argument("--t-final", type=float, default=0.4)
    p.add_argument("--dt", type=float, default=0.02)
    p.add_argument("--diag-shift", type=float, default=1e-4)
    p.add_argument("--n-samples", type=int, default=1024)
    p.add_argument("--n-chains", type=int, default=16)
    p.add_argument("--n-discard", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    N = args.L**2
    hi = nk.hilbert.Spin(0.5, N)
    g = nk.graph.Grid([args.L, args.L], pbc=True)
    H = nk.operator.IsingJax(hi, g, h=args.G, J=-1.0)
    psi0 = np.full(2**N, 2 ** (-N / 2), dtype=np.complex128)
    exact = exact_evolution(H, psi0, [(int(i), int(j)) for i, j in g.edges()], np.array([0.0, args.t_final]))
    runs = {"distnqs": [], "netket": []}
    for r in range(args.repeats):  # alternate, so drifts of a shared machine hit both codes
        d = run_distnqs(args, seed=r)
        n = run_netket(args, seed=r, initial_params=d.pop("initial_params"))
        for code, res in (("distnqs", d), ("netket", n)):
            res["sx_abs_error_vs_exact"] = abs(res["sx"] - exact["sx"][-1])
            res["szsz_abs_error_vs_exact"] = abs(res["szsz"] - exact["szsz"][-1])
            runs[code].append(res)
            print(f"{code} repeat {r}: {res['s_per_unit_time']:.3f} s per unit time, <sx>(T) = {res['sx']:.4f} ± {res['sx_error']:.4f} "
                  f"(exact {exact['sx'][-1]:.4f}), first dt {res['first_step_s']:.1f} s", flush=True)
    med = {c: float(np.median([x["s_per_unit_time"] for x in v])) for c, v in runs.items()}
    out = {
        "case": f"quench +x -> TFIM {args.L}x{args.L} periodic, G = {args.G}",
        "settings": {**vars(args), "integrator": "rk4", "ansatz": "RBM alpha=1 complex128", "sampler": "Metropolis local, sweep = N",
                     "regularization": f"diag_shift {args.diag_shift}, dense Cholesky", "evaluation_samples": 2 * args.n_samples},
        "exact_final": {"t": args.t_final, "sx": exact["sx"][-1], "szsz": exact["szsz"][-1], "energy": exact["energy"][-1],
                        "source": "scipy.sparse.linalg.expm_multiply"},
        **runs,
        "median_s_per_unit_time": med,
        "min_max_s_per_unit_time": {c: [float(min(x["s_per_unit_time"] for x in v)), float(max(x["s_per_unit_time"] for x in v))] for c, v in runs.items()},
        "ratio_netket_over_distnqs": med["netket"] / med["distnqs"],
        "median_sx_abs_error_vs_exact": {c: float(np.median([x["sx_abs_error_vs_exact"] for x in v])) for c, v in runs.items()},
        "peak_rss_mb_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "machine": f"{platform.machine()}, {jax.device_count()} x {jax.devices()[0].device_kind}, {len(os.sched_getaffinity(0))} cores",
        "thread_env": {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS")},
        "conditions": "2-core machine shared with other users' jobs (load not controlled); codes alternated within one process",
        "versions": {"jax": jax.__version__, "netket": nk.__version__, "distnqs": distnqs.__version__},
        "command": f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', '')} python benchmarks/bench_dynamics.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"dynamics_tfim{args.L}x{args.L}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"{path.name}: distnqs {med['distnqs']:.3f}, netket {med['netket']:.3f} s per unit time; NetKet / distnqs {out['ratio_netket_over_distnqs']:.2f}")


if __name__ == "__main__":
    main()
