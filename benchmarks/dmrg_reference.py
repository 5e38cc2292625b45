"""DMRG reference energy of the open L x L transverse-field Ising model (physics-tenpy).

    H = -J sum_<ij> sigma^z_i sigma^z_j - G sum_i sigma^x_i      (Pauli matrices, J = 1, open)

tenpy's ``TFIModel`` writes the same Hamiltonian with x and z exchanged
(``-J sum sx sx - g sum sz``), a basis rotation that leaves the spectrum unchanged.
Two-site DMRG on the square lattice mapped to a finite MPS along tenpy's default snake
order, Z2 parity conserved, with the bond dimension raised step by step (``--chi``). For
each bond dimension the script records the energy per site, the largest discarded weight of
the last sweep and the energy change from the previous bond dimension; the last entry is the
reference. Its error is estimated as the change from the previous bond dimension (DMRG energies
are variational and converge from above), which the JSON records beside the value. With two or
more bond dimensions the JSON also carries the linear extrapolation of E in the largest discarded
weight eps through the last two points, E(eps) = E_0 + a eps (White's extrapolation, with the
largest discarded weight of the last sweep as eps), as a second estimate of the exact energy.

Each bond dimension is warm-started from the final state of the previous one; the mixer
(needed to grow the bond dimension from the product state) is on for the first only, and a bond
dimension stops when the total energy changes by less than ``--max-E-err`` over a sweep (and
tenpy's entropy criterion holds), after ``--max-sweeps`` sweeps, or after ``--max-hours``; the JSON
records which (``stopped_by``) and the energies of the last sweeps.

    .venv/bin/python benchmarks/dmrg_reference.py --L 10 --G 3 --chi 64 128 256 --max-sweeps 10 --max-E-err 1e-6 --max-hours 0.85

Writes benchmarks/results/dmrg_tfim_obc_<L>x<L>_G<G>.json. The reference used by
``bench_accuracy.py`` is copied from there into ``distnqs/data/literature.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def dmrg_tfim(L: int, G: float, chis: list[int], max_sweeps: int = 30, max_E_err: float = 1e-8,
              max_hours: float | None = None, on_result=None) -> list[dict]:
    """Ground-state energy per site for each bond dimension in ``chis`` (warm-started in turn).

    ``on_result(records)`` is called after each bond dimension (the script writes its JSON then,
    so that a run stopped during a large bond dimension keeps the smaller ones)."""
    from tenpy.algorithms import dmrg
    from tenpy.models.tf_ising import TFIModel
    from tenpy.networks.mps import MPS

    model = TFIModel({"lattice": "Square", "Lx": L, "Ly": L, "bc_x": "open", "bc_y": "open",
                      "bc_MPS": "finite", "J": 1.0, "g": G, "conserve": "parity"})
    N = model.lat.N_sites
    psi = MPS.from_product_state(model.lat.mps_sites(), ["up"] * N, bc="finite")
    out = []
    prev = None
    for chi in chis:
        t0 = time.perf_counter()
        params = {"mixer": prev is None, "max_E_err": max_E_err, "max_sweeps": max_sweeps, "min_sweeps": 4,
                  "trunc_params": {"chi_max": chi, "svd_min": 1e-12}, "combine": True}
        if max_hours is not None:
            params["max_hours"] = max_hours  # checked after each sweep: the run may overshoot by one
        engine = dmrg.TwoSiteDMRGEngine(psi, model, params)
        E, psi = engine.run()
        e = float(E) / N
        rec = {
            "chi": chi,
            "E_per_site": e,
            "max_trunc_err": float(np.max(engine.sweep_stats["max_trunc_err"][-1:])),
            "sweeps": int(engine.sweep_stats["sweep"][-1]),
            "seconds": time.perf_counter() - t0,
            "change_from_previous_chi": None if prev is None else e - prev,
            "max_bond_dimension": int(max(psi.chi)),
            # total energy after each of the last sweeps: how far from converged a stopped run is
            "last_sweeps_E_per_site": [float(x) / N for x in engine.sweep_stats["E"][-4:]],
            "stopped_by": "time" if engine.shelve else ("max_sweeps" if engine.sweep_stats["sweep"][-1] >= max_sweeps else "converged"),
        }
        out.append(rec)
        prev = e
        print(json.dumps(rec), flush=True)
        if on_result is not None:
            on_result(out)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--L", type=int, default=10)
    p.add_argument("--G", type=float, default=3.0)
    p.add_argument("--chi", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--max-sweeps", type=int, default=30, help="sweeps per bond dimension at most")
    p.add_argument("--max-E-err", type=float, default=1e-8,
                   help="stop a bond dimension when the total energy changes by less than this over a sweep")
    p.add_argument("--max-hours", type=float, help="wall time per bond dimension at most (tenpy's max_hours)")
    args = p.parse_args(argv)
    dmrg_tfim(args.L, args.G, args.chi, args.max_sweeps, args.max_E_err, args.max_hours,
              on_result=lambda runs: write(args, runs))


def extrapolate(runs: list[dict]) -> float | None:
    """E_0 of the line E = E_0 + a eps through the last two (eps, E) points; eps = largest discarded weight."""
    if len(runs) < 2:
        return None
    (e1, E1), (e2, E2) = [(r["max_trunc_err"], r["E_per_site"]) for r in runs[-2:]]
    if e1 == e2:
        return None
    return E2 - (E1 - E2) / (e1 - e2) * e2


def write(args, runs, note=None):
    """benchmarks/results/dmrg_tfim_obc_<L>x<L>_G<G>.json from the bond dimensions done so far."""
    best = runs[-1]
    out = {
        "problem": f"TFIM H = -sum_<ij> sz sz - G sum sx, {args.L}x{args.L} open square lattice, G = {args.G} (Pauli units)",
        "method": "two-site DMRG (physics-tenpy TwoSiteDMRGEngine, snake MPS, Z2 parity; mixer at the first bond dimension), bond dimension raised step by step, each warm-started from the previous",
        "E_per_site": best["E_per_site"],
        "chi": best["chi"],
        "max_trunc_err": best["max_trunc_err"],
        "uncertainty_estimate": None if best["change_from_previous_chi"] is None else abs(best["change_from_previous_chi"]),
        "E_per_site_extrapolated": extrapolate(runs),
        "runs": runs,
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "versions": {"tenpy": __import__("tenpy").__version__},
        "command": (f"python benchmarks/dmrg_reference.py --L {args.L} --G {args.G:g} --chi {' '.join(map(str, args.chi))}"
                    f" --max-sweeps {args.max_sweeps} --max-E-err {args.max_E_err:g}"
                    + (f" --max-hours {args.max_hours:g}" if args.max_hours is not None else "")),
        "note": note or ("all bond dimensions done" if len(runs) == len(args.chi) else f"bond dimensions after {best['chi']} not (yet) done"),
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"dmrg_tfim_obc_{args.L}x{args.L}_G{args.G:g}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"E/N = {best['E_per_site']:.10f} (chi {best['chi']}, trunc {best['max_trunc_err']:.1e}) -> {path}")


if __name__ == "__main__":
    main()
