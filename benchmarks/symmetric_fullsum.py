"""Exact-expectation SR for a (symmetric) RBM config (README, "Symmetric ansatze").

Tells whether the stall of the projected ansatz on the 6x3 J1-J2 torus at momentum (pi, 0) comes
from Monte Carlo noise: the config's lattice, Hamiltonian and ansatz (distnqs' own builders, so the
same flax module as ``distnqs run``) are trained with NetKet's ``FullSumState`` (expectation values
by enumerating the whole S^z = 0 sector: 48,620 states on 18 sites), SGD + SR with the config's
learning rate and diag shift, and the energy per site is printed every 20 steps with its relative
error against Lanczos. The initial parameters are NetKet's (seed 7), not the sampled run's.

    .venv/bin/python benchmarks/symmetric_fullsum.py configs/symmetric/j1j2_6x3_translations.toml 20

Slow: about 10 minutes per 20 steps for the projected 6x3 config on the 2-core machine (18 images
of each state, dense S). Recorded runs (20 steps, lr 0.02, diag shift 0.01):
``j1j2_6x3_translations.toml`` (sector (pi, 0)) E/N = +0.015 (relative error 1.008);
``j1j2_6x3_plain.toml`` -1.644752 (1.62e-1), 88 s.
"""

from __future__ import annotations

import argparse
import time

import netket as nk
import optax

from distnqs import config
from distnqs.models import build_model
from distnqs.operators.hamiltonians import build_hamiltonian
from distnqs.operators.lattice import build_lattice


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", help="a distnqs run config (SR optimizer)")
    ap.add_argument("steps", type=int, help="SR steps (energy printed every 20)")
    args = ap.parse_args(argv)
    cfg = config.load(args.config)
    lattice = build_lattice(cfg["lattice"])
    H = build_hamiltonian(cfg["hamiltonian"], lattice)
    module = build_model(cfg["ansatz"], lattice).module
    e0 = nk.exact.lanczos_ed(H)[0] / lattice.n_sites
    opt = cfg["optimizer"]
    vs = nk.vqs.FullSumState(H.hilbert, module, seed=7)
    driver = nk.driver.VMC(H, optax.sgd(opt["learning_rate"]), variational_state=vs,
                           preconditioner=nk.optimizer.SR(diag_shift=opt["diag_shift"], holomorphic=False))
    t0, done = time.time(), 0
    while done < args.steps:
        block = min(20, args.steps - done)
        driver.run(block, show_progress=False)
        done += block
        e = float(vs.expect(H).mean.real) / lattice.n_sites
        print(f"step {done}: E/N = {e:.6f}  rel. error {abs(e - e0) / abs(e0):.3e}  ({time.time() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
