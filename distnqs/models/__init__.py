"""Ansätze: flax modules mapping spins ``(batch, N)`` to ``log psi`` ``(batch,)``.

Built-in names (``[ansatz] model = ...``): ``rbm``, ``rbm_symm`` (invariant under the lattice
group of ``[ansatz] symmetries``), ``ffnn``, ``cnn``, ``naqs``; ``netket.<Name>`` takes
``netket.models.<Name>`` (e.g. ``netket.RBM``; also NetKet's factory functions such as
``netket.GCNN``, which are given the lattice group of ``[ansatz] symmetries``). In Python any
flax module with that signature can be passed to the driver.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from distnqs.errors import ConfigError
from distnqs.models.base import Ansatz, ComplexPair, from_real, n_parameters, to_real
from distnqs.models.cnn import CNN
from distnqs.models.ffnn import FFNN
from distnqs.models.rbm import RBM
from distnqs.models.symmetric import Symmetrized, symmetrize, symmetry_group

# name -> "module:Class" (imported lazily so optional ansätze cost nothing)
REGISTRY = {
    "rbm": "distnqs.models.rbm:RBM",
    "rbm_symm": "distnqs.models.rbm:RBMSymm",
    "ffnn": "distnqs.models.ffnn:FFNN",
    "cnn": "distnqs.models.cnn:CNN",
    "naqs": "distnqs.models.naqs:NAQS",
}

_DTYPES = {
    "float32": jnp.float32,
    "float64": jnp.float64,
    "complex64": jnp.complex64,
    "complex128": jnp.complex128,
}


def _resolve_class(name):
    if isinstance(name, str) and name.startswith("netket."):
        import netket as nk

        cls = getattr(nk.models, name.split(".", 1)[1], None)
        if cls is None:
            raise ConfigError(f"unknown ansatz {name!r}: netket.models has no {name.split('.', 1)[1]!r}")
        return cls
    if name not in REGISTRY:
        raise ConfigError(f"unknown ansatz model {name!r}; choose one of: {', '.join(REGISTRY)} or netket.<Name>")
    module_name, cls_name = REGISTRY[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise ConfigError(f"ansatz {name!r} is not available in this installation ({module_name} is missing)") from exc
    return getattr(module, cls_name)


def _invariant_group(cls, name: str, lattice, symmetries: str, sector, options: dict) -> dict:
    r"""``{"symmetries": permutations}`` for a module that is invariant by construction under a group
    it is given (:class:`~distnqs.models.rbm.RBMSymm`, ``netket.RBMSymm``: filters shared by all
    :math:`|G|` images, so :math:`\psi(hs) = \psi(s)` for every :math:`h` in G). Such a network is
    symmetric only in the trivial sector (zero momentum, A1); other sectors need the projection of
    a non-invariant network. NetKet's models take a ``PermutationGroup`` (the GCNN needs its
    product table and irreps), ours nested tuples."""
    if symmetries == "none":
        raise ConfigError(f"ansatz {name} is built on a symmetry group: set [ansatz] symmetries = \"translations\" or \"lattice\"")
    perms, chars = symmetry_group(lattice, symmetries, sector)
    if not np.allclose(chars, 1.0):
        raise ConfigError(f"ansatz {name} is invariant by construction (trivial sector only); sector {sector!r} needs a projected network, e.g. model = \"rbm\"")
    if cls.__module__.startswith("netket"):  # RBMSymm and the GCNN factory both take a PermutationGroup
        from netket.utils.group import Permutation, PermutationGroup  # noqa: PLC0415 - only netket models need it

        if options.get("mode") == "fft" and symmetries != "translations":
            # NetKet's FFT layers read the group as point group x translation grid in its own
            # order; ours differs, and the network would silently not be invariant
            raise ConfigError(f"ansatz {name}: mode = \"fft\" takes symmetries = \"translations\" only; use mode = \"irreps\" for {symmetries!r}")
        return {"symmetries": PermutationGroup([Permutation(permutation_array=p) for p in np.asarray(perms)], degree=perms.shape[1])}
    return {"symmetries": tuple(map(tuple, perms.tolist()))}  # static and hashable


def _options(cls) -> tuple[set[str], bool]:
    """The options a model accepts and whether that set is complete: a flax module's dataclass
    fields; a factory function's (``netket.GCNN``) named parameters, incomplete when it also
    forwards ``**kwargs`` (those are checked when the module is built)."""
    if dataclasses.is_dataclass(cls):
        return {f.name for f in dataclasses.fields(cls)} - {"parent", "name"}, True
    params = inspect.signature(cls).parameters.values()
    named = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return named, not any(p.kind is p.VAR_KEYWORD for p in params)


def build_model(cfg: dict, lattice) -> Ansatz:
    """Ansatz from the ``[ansatz]`` table; lattice-aware fields are filled in.

    Options are the module's dataclass fields; ``shape`` / ``pbc`` / ``Lx`` /
    ``Ly`` / ``n_sites`` are taken from the lattice when the module has them.
    ``param_dtype`` / ``dtype`` accept "float32", "float64", "complex64", "complex128".
    ``symmetries`` / ``sector`` / ``spin_flip`` (any non-autoregressive model) wrap the module in
    :class:`~distnqs.models.symmetric.Symmetrized`, the projection onto that symmetry sector; a
    module with a ``symmetries`` field (``rbm_symm``, ``netket.RBMSymm``) is given the group's
    permutations instead (:func:`_invariant_group`).
    """
    cfg = dict(cfg)
    name = cfg.pop("model", None)
    if name is None:
        raise ConfigError("[ansatz] needs model (e.g. model = \"rbm\")")
    symmetries, sector, spin_flip = cfg.pop("symmetries", "none"), cfg.pop("sector", None), cfg.pop("spin_flip", "none")
    cls = _resolve_class(name)
    fields, complete = _options(cls)
    unknown = set(cfg) - fields
    if unknown and complete:
        raise ConfigError(f"ansatz {name} has no option {sorted(unknown)[0]!r} (options: {', '.join(sorted(fields))})")
    if "symmetries" in fields:  # invariant by construction (netket.RBMSymm, ...): the module takes the group itself
        kwargs_group = _invariant_group(cls, name, lattice, symmetries, sector, cfg)
        symmetries, sector = "none", None  # nothing left to project (spin_flip still may be)
    else:
        kwargs_group = {}
    auto = {"shape": lattice.shape, "pbc": lattice.pbc, "Lx": lattice.Lx, "Ly": lattice.Ly, "n_sites": lattice.n_sites}
    kwargs = {k: v for k, v in auto.items() if k in fields and k not in cfg} | kwargs_group
    for key, value in cfg.items():
        if key in ("param_dtype", "dtype") and isinstance(value, str):
            if value not in _DTYPES:
                raise ConfigError(f"unknown {key} {value!r}; choose one of: {', '.join(_DTYPES)}")
            value = _DTYPES[value]
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    try:
        module = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"ansatz {name}: {exc}") from exc
    if not isinstance(module, nn.Module):
        raise ConfigError(f"ansatz {name} is not a flax module (it built a {type(module).__name__})")
    if symmetries != "none" or spin_flip != "none" or sector is not None:
        module = symmetrize(module, lattice, symmetries, sector, spin_flip)  # refuses a sector without symmetries
    return Ansatz(module, lattice.n_sites)


__all__ = [
    "Ansatz",
    "ComplexPair",
    "CNN",
    "FFNN",
    "RBM",
    "REGISTRY",
    "Symmetrized",
    "build_model",
    "from_real",
    "symmetrize",
    "n_parameters",
    "to_real",
]
