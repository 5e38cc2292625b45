"""Square lattices and chains with distnqs' site order.

Convention (DESIGN.md): spins are +1/-1 in arrays of shape ``(batch, N)``; on
an ``Lx x Ly`` lattice site ``(x, y)`` has index ``i = y * Lx + x`` (row-major,
x fastest). NetKet's ``Grid(extent=[Ly, Lx])`` numbers its sites the same way
(last coordinate fastest), so its edges are used as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import netket as nk

from distnqs.errors import ConfigError


@dataclass(frozen=True)
class Lattice:
    """An ``Lx x Ly`` square lattice (``Ly = 1``: a chain), open or periodic."""

    Lx: int
    Ly: int
    pbc: bool

    @property
    def n_sites(self) -> int:
        return self.Lx * self.Ly

    @property
    def dim(self) -> int:
        return 1 if self.Ly == 1 else 2

    @property
    def shape(self) -> tuple[int, int]:
        """``(Ly, Lx)``: a configuration reshaped to this is an image, x fastest."""
        return (self.Ly, self.Lx)

    def graph(self, max_neighbor_order: int = 1) -> nk.graph.Graph:
        """NetKet graph with nearest (and, if asked, next-nearest) neighbour edges."""
        extent = [self.Lx] if self.dim == 1 else [self.Ly, self.Lx]
        return nk.graph.Grid(extent, pbc=self.pbc, max_neighbor_order=max_neighbor_order)

    def nearest_neighbour_pairs(self) -> list[tuple[int, int]]:
        return [tuple(sorted(e)) for e in self.graph().edges()]

    def describe(self) -> str:
        bc = "periodic" if self.pbc else "open"
        return f"{self.Lx} chain ({bc})" if self.dim == 1 else f"{self.Lx}x{self.Ly} square ({bc})"


def build_lattice(cfg: dict) -> Lattice:
    """Lattice from the ``[lattice]`` table: ``kind``, ``Lx``, ``Ly``, ``pbc``."""
    kind = cfg.get("kind", "square")
    if kind not in ("square", "chain"):
        raise ConfigError(f"unknown lattice kind {kind!r}; choose 'square' or 'chain'")
    Lx = cfg.get("Lx", cfg.get("L"))
    if Lx is None:
        raise ConfigError("[lattice] needs Lx (or L)")
    Ly = cfg.get("Ly", 1 if kind == "chain" else Lx)
    if kind == "chain" and Ly != 1:
        raise ConfigError("a chain has Ly = 1")
    for name, value in (("Lx", Lx), ("Ly", Ly)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"[lattice] {name} must be a positive integer, got {value!r}")
    if Lx * Ly < 2:
        raise ConfigError("a lattice needs at least 2 sites")
    pbc = cfg.get("pbc", True)
    if not isinstance(pbc, bool):
        raise ConfigError(f"[lattice] pbc must be true or false, got {pbc!r}")
    if pbc and (Lx == 2 or Ly == 2):
        raise ConfigError("periodic boundaries need every side >= 3 (a side of 2 doubles its bonds)")
    return Lattice(Lx, Ly, pbc)
