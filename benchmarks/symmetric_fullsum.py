"""Exact-expectation SR for a (symmetric) RBM config (README, "Symmetric ansatze").

Tells whether the stall of the projected ansatz on the 6x3 J1-J2 torus at momentum (pi, 0) comes
from Monte Carlo noise: the config's lattice, Hamiltonian and ansatz (distnqs' own builders, so the
same flax module as ``distnqs run``) are trained with NetKet's ``FullSumState`` (expectation values
by enumerating the whole S^z = 0 sector: 48,620 states on 18 sites), SGD + SR with the config's
learning rate and diag shift, and the energy per site is printed every 20 steps with its relative
error against Lanczos. The initial parameters are NetKet's (seed 7), not the sampled run's, or
those of the config's ``[run] init_from`` checkpoint (``steps`` = 0: only the energy of that start).

    .venv/bin/python benchmarks/symmetric_fullsum.py configs/symmetric/j1j2_6x3_translations.toml 20

Slow: about 10 minutes per 20 steps for the projected 6x3 config on the 2-core machine (18 images
of each state, dense S). Recorded runs (20 steps, lr 0.02, diag shift 0.01):
``j1j2_6x3_translations.toml`` (sector (pi, 0)) E/N = +0.015 (relative error 1.008);
``j1j2_6x3_plain.toml`` -1.644752 (1.62e-1), 88 s.
"""

from __future__ import annotations

import argparse
import time

import jax
import netket as nk
import optax

from distnqs import config
from distnqs.driver import params_from_checkpoint
from distnqs.models import build_model
from distnqs.models.base import from_real
from distnqs.operators.hamiltonians import build_hamiltonian
from distnqs.operators.lattice import build_lattice


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", help="a distnqs run config (SR optimizer)")
    ap.add_argument("steps", type=int, help="SR steps (energy printed at the start and every 20)")
    args = ap.parse_args(argv)
    cfg = config.load(args.config)
    lattice = build_lattice(cfg["lattice"])
    H = build_hamiltonian(cfg["hamiltonian"], lattice)
    ansatz = build_model(cfg["ansatz"], lattice)
    e0 = nk.exact.lanczos_ed(H)[0] / lattice.n_sites
    opt = cfg["optimizer"]
    vs = nk.vqs.FullSumState(H.hilbert, ansatz.module, seed=7)
    source = cfg["run"].get("init_from")
    if source is not None:  # the config's start: another run's parameters, read as `distnqs run` reads them
        rparams, found = params_from_checkpoint(source, ansatz.init(jax.random.PRNGKey(0)), cfg, "[run] init_from", ("lattice",))
        vs.parameters = from_real(rparams)
        print(f"parameters from {found['path']} (step {found['step']})")
    report(vs, H, lattice.n_sites, e0, 0, time.time())
    driver = nk.driver.VMC(H, optax.sgd(opt["learning_rate"]), variational_state=vs,
                           preconditioner=nk.optimizer.SR(diag_shift=opt["diag_shift"], holomorphic=False))
    t0, done = time.time(), 0
    while done < args.steps:
        block = min(20, args.steps - done)
        driver.run(block, show_progress=False)
        done += block
        report(vs, H, lattice.n_sites, e0, done, t0)
    return 0


def report(vs, H, n_sites: int, e0: float, step: int, t0: float) -> None:
    e = float(vs.expect(H).mean.real) / n_sites
    print(f"step {step}: E/N = {e:.6f}  rel. error {abs(e - e0) / abs(e0):.3e}  ({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
