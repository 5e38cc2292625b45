"""Everything a run needs, built from a resolved config (or given as objects).

``build_problem(cfg)`` follows the data flow: lattice + Hamiltonian
(operators) -> ansatz (models) -> sampler (samplers) -> optimizer (optim) ->
the jitted step. Python users can pass their own NetKet operator or flax
module instead of the config's ``[hamiltonian]`` / ``[ansatz]``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from distnqs import comm
from distnqs.errors import ConfigError
from distnqs.models import Ansatz, build_model, n_parameters
from distnqs.observables import build_observables
from distnqs.operators import as_jax_operator, build_hamiltonian, build_lattice
from distnqs.operators.lattice import Lattice
from distnqs.optim import Optimizer, build_guard, build_optimizer
from distnqs.samplers import build_sampler
from distnqs.step import VMCStep


@dataclass(eq=False)
class Problem:
    cfg: dict
    lattice: Lattice
    hamiltonian: Any
    ansatz: Ansatz
    sampler: Any
    optimizer: Optimizer
    step: VMCStep

    @property
    def n_sites(self) -> int:
        return self.lattice.n_sites

    @functools.cached_property
    def n_parameters(self) -> int:
        """Number of real parameters (from the shapes alone, traced once)."""
        return n_parameters(self.ansatz.shapes())

    def init_params(self):
        import jax

        return self.ansatz.init(jax.random.PRNGKey(self.cfg["seed"]))

    def init_state(self, params=None):
        """(params, opt_state, sampler_state) at step 0; identical params on every rank.
        ``params`` (real view) replaces the seeded initialization, e.g. another run's parameters."""
        params = self.init_params() if params is None else params
        opt_state = self.optimizer.init(params)  # (optax state, guard state)
        sampler_state = self.sampler.init_state(self.ansatz.log_psi, params, comm.rank_key(self.cfg["seed"] + 1))
        return params, opt_state, sampler_state

    def describe(self) -> str:
        h = self.cfg["hamiltonian"]
        model = h.get("model", type(self.hamiltonian).__name__)
        extra = f" G={h['G']}" if "G" in h else ""
        sym = self.cfg["ansatz"].get("symmetries", "none")
        flip = self.cfg["ansatz"].get("spin_flip", "none")
        if sym != "none" or flip != "none":
            from distnqs.models.symmetric import Symmetrized, group_size

            sector = self.cfg["ansatz"].get("sector")
            what = " x ".join(([sym] if sym != "none" else []) + ([f"the spin flip ({flip})"] if flip != "none" else []))
            how = "symmetrized over" if isinstance(self.ansatz.module, Symmetrized) else "invariant under"  # rbm_symm: built in
            sym = f", {how} {what} (|G| = {group_size(self.lattice, sym, flip)}{f', sector {sector}' if sector is not None else ''})"
        else:
            sym = ""
        return (
            f"{model}{extra} on {self.lattice.describe()}, N={self.n_sites}; "
            f"ansatz {self.cfg['ansatz'].get('model', type(self.ansatz.module).__name__)} "
            f"({self.n_parameters} real parameters{sym}); "
            f"sampler {self.cfg['sampler'].get('kind')} with {self.step.n_samples_total} samples/step on {comm.size()} rank(s)"
            + (" (look-up-table moves)" if getattr(self.sampler, "uses_fast_update", False) else "")
        )


def check_memory(cfg: dict, lattice, ansatz) -> int:
    """Refuse a run whose estimated memory exceeds this machine's (all ranks on it together)."""
    import socket

    from distnqs import memory

    hosts = comm.allgather_object(socket.gethostname()) if comm.size() > 1 else [socket.gethostname()]
    return memory.check(cfg, lattice, ansatz, comm.size(), ranks_here=hosts.count(socket.gethostname()))


def check_holomorphic_ansatz(ansatz, params, n_sites: int) -> None:
    """``minsr_holomorphic`` needs complex parameters and a holomorphic network (Cauchy-Riemann
    on a few random configurations); otherwise one ConfigError line."""
    import jax

    from distnqs.optim.minsr import check_holomorphic

    spins = jax.random.choice(jax.random.PRNGKey(1), jax.numpy.array([-1.0, 1.0]), (4, n_sites))
    try:
        ok = check_holomorphic(ansatz.log_psi, params, spins)
    except ValueError as exc:
        raise ConfigError(f"[optimizer] {exc}") from None
    if not ok:
        raise ConfigError("[optimizer] minsr_holomorphic: the ansatz is not holomorphic in its complex parameters; leave minsr_holomorphic false")


def build_problem(cfg: dict, hamiltonian=None, model=None) -> Problem:
    lattice = build_lattice(cfg["lattice"])
    ansatz = Ansatz(model, lattice.n_sites) if model is not None else build_model(cfg["ansatz"], lattice)
    check_memory(cfg, lattice, ansatz)  # before anything of the run's size is built
    if hamiltonian is None:
        hamiltonian = build_hamiltonian(cfg["hamiltonian"], lattice)
    hamiltonian = as_jax_operator(hamiltonian)
    if hamiltonian.hilbert.size != lattice.n_sites:
        raise ConfigError(
            f"the Hamiltonian acts on {hamiltonian.hilbert.size} sites but the lattice has {lattice.n_sites}"
        )
    ansatz.shapes()  # fails early on a size mismatch (an abstract trace: nothing is compiled)
    fast = bool(cfg["run"].get("fast_update", True))
    sampler = build_sampler(cfg["sampler"], lattice, hamiltonian.hilbert, ansatz, comm.size(), fast_update=fast)
    chunk = cfg["run"].get("chunk_size") or None
    optimizer = build_optimizer(cfg["optimizer"], cfg["n_steps"], chunk_size=chunk, guard=build_guard(cfg["run"]))
    if optimizer.sr is not None and optimizer.sr.solver == "minsr" and optimizer.sr.minsr_holomorphic:
        check_holomorphic_ansatz(ansatz, ansatz.init(__import__("jax").random.PRNGKey(0)), lattice.n_sites)
    observables = build_observables(cfg, lattice, chunk)
    step = VMCStep(
        ansatz=ansatz,
        hamiltonian=hamiltonian,
        sampler=sampler,
        optimizer=optimizer,
        seed=cfg["seed"],
        chunk_size=chunk,
        magnetization=bool(cfg["observables"].get("magnetization", True)),
        fast_update=ansatz.fast_update if fast else None,
        observables=observables,
    )
    return Problem(cfg, lattice, hamiltonian, ansatz, sampler, optimizer, step)
