"""Exact-expectation SR for the symmetric RBM on the 6x3 J1-J2 torus (README, "Symmetric ansatze").

Tells whether the stall of the projected ansatz at momentum (pi, 0) comes from Monte Carlo noise:
the same flax module (distnqs RBM, complex, alpha 1, projected with ``symmetrize``) is trained with
NetKet's ``FullSumState`` (expectation values by enumerating all 48,620 S^z = 0 states), SGD + SR
(diag shift 0.01), and the energy per site is printed every 20 steps with its relative error
against Lanczos.

    .venv/bin/python benchmarks/symmetric_fullsum.py k30 20 0.02   # mode, steps, learning rate [, init std]

Modes: ``plain`` (no projection), ``k00`` (zero momentum), ``k30`` (momentum (pi, 0), the ground
state's sector). Slow: about 10 minutes per 20 steps for ``k30`` on the 2-core machine (18 images
of each of the 48,620 states, dense S). Recorded run: ``k30 20 0.02`` gave E/N = +0.015 after 20
steps (relative error 1.008); ``plain 20 0.02`` gave -1.644752 (1.62e-1) in 88 s.
"""

from __future__ import annotations

import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import netket as nk  # noqa: E402
import optax  # noqa: E402

from distnqs.models.rbm import RBM  # noqa: E402
from distnqs.models.symmetric import symmetrize  # noqa: E402
from distnqs.operators.hamiltonians import j1j2  # noqa: E402
from distnqs.operators.lattice import Lattice  # noqa: E402

SECTORS = {"plain": None, "k00": [0, 0], "k30": [3, 0]}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) not in (3, 4) or argv[0] not in SECTORS:
        raise SystemExit(f"usage: symmetric_fullsum.py {{{'|'.join(SECTORS)}}} STEPS LR [INIT_STD]")
    mode, steps, lr = argv[0], int(argv[1]), float(argv[2])
    std = float(argv[3]) if len(argv) == 4 else 0.01
    lattice = Lattice(6, 3, True)
    H = j1j2(lattice, J2=0.5, total_sz=0)
    e0 = nk.exact.lanczos_ed(H)[0] / lattice.n_sites
    model = RBM(alpha=1, param_dtype=jnp.complex128, init_std=std)
    if SECTORS[mode] is not None:
        model = symmetrize(model, lattice, "translations", SECTORS[mode])
    vs = nk.vqs.FullSumState(H.hilbert, model, seed=7)
    driver = nk.driver.VMC(H, optax.sgd(lr), variational_state=vs,
                           preconditioner=nk.optimizer.SR(diag_shift=0.01, holomorphic=False))
    t0 = time.time()
    for block in range(max(1, steps // 20)):
        driver.run(20, show_progress=False)
        e = float(vs.expect(H).mean.real) / lattice.n_sites
        print(f"{mode} step {(block + 1) * 20}: E/N = {e:.6f}  rel. error {abs(e - e0) / abs(e0):.3e}  "
              f"({time.time() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
