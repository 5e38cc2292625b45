"""DMRG reference energy of the open L x L transverse-field Ising model (physics-tenpy).

    H = -J sum_<ij> sigma^z_i sigma^z_j - G sum_i sigma^x_i      (Pauli matrices, J = 1, open)

tenpy's ``TFIModel`` writes the same Hamiltonian with x and z exchanged
(``-J sum sx sx - g sum sz``), a basis rotation that leaves the spectrum unchanged.
Two-site DMRG on the square lattice mapped to a finite MPS along tenpy's default snake
order, Z2 parity conserved, with the bond dimension raised step by step (``--chi``). For
each bond dimension the script records the energy per site, the largest discarded weight of
the last sweep and the energy change from the previous bond dimension; the last entry is the
reference. Its error is estimated as the change from the previous bond dimension (DMRG energies
are variational and converge from above), which the JSON records beside the value.

    .venv/bin/python benchmarks/dmrg_reference.py --L 10 --G 3 --chi 64 128 256 384

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


def dmrg_tfim(L: int, G: float, chis: list[int], max_sweeps: int = 30, on_result=None) -> list[dict]:
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
        params = {"mixer": True, "max_E_err": 1e-11, "max_sweeps": max_sweeps, "min_sweeps": 4,
                  "trunc_params": {"chi_max": chi, "svd_min": 1e-12}, "combine": True}
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
    p.add_argument("--chi", type=int, nargs="+", default=[64, 128, 256, 384])
    args = p.parse_args(argv)
    dmrg_tfim(args.L, args.G, args.chi, on_result=lambda runs: write(args, runs))


def write(args, runs, note=None):
    """benchmarks/results/dmrg_tfim_obc_<L>x<L>_G<G>.json from the bond dimensions done so far."""
    best = runs[-1]
    out = {
        "problem": f"TFIM H = -sum_<ij> sz sz - G sum sx, {args.L}x{args.L} open square lattice, G = {args.G} (Pauli units)",
        "method": "two-site DMRG (physics-tenpy TwoSiteDMRGEngine, snake MPS, Z2 parity, mixer), bond dimension raised step by step",
        "E_per_site": best["E_per_site"],
        "chi": best["chi"],
        "max_trunc_err": best["max_trunc_err"],
        "uncertainty_estimate": None if best["change_from_previous_chi"] is None else abs(best["change_from_previous_chi"]),
        "runs": runs,
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "versions": {"tenpy": __import__("tenpy").__version__},
        "command": f"python benchmarks/dmrg_reference.py --L {args.L} --G {args.G:g} --chi {' '.join(map(str, args.chi))}",
        "note": note or ("all bond dimensions done" if len(runs) == len(args.chi) else f"bond dimensions after {best['chi']} not (yet) done"),
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"dmrg_tfim_obc_{args.L}x{args.L}_G{args.G:g}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"E/N = {best['E_per_site']:.10f} (chi {best['chi']}, trunc {best['max_trunc_err']:.1e}) -> {path}")


if __name__ == "__main__":
    main()
