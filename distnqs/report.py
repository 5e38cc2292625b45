r"""Compare a finished (or running) run with published values: ``distnqs report D``.

Reads ``D/config.toml`` and ``D/summary.json`` and looks the run's lattice,
model and field up in the package's ``literature.json``
(:func:`distnqs.reference_data.literature`; sources in ``distnqs/data/README.md``).
Reported, per site and in Pauli units (:math:`H_\mathrm{TFIM} = -\sum\sigma^z\sigma^z - G\sum\sigma^x`,
:math:`H_\mathrm{Heis} = \sum\vec\sigma\cdot\vec\sigma`):

.. math::  \epsilon_\mathrm{rel} = \frac{|E_\mathrm{run} - E_\mathrm{ref}|}{|E_\mathrm{ref}|},

beside the same quantity for the NAQS energy of Sharir et al., PRL 124,
020503 (2020) (Tables I and II) where the paper gives one. Heisenberg values
stored in spin-1/2 units (keys ending in ``_S``, or the ``naqs_paper`` /
``peps_paper`` numbers of a Heisenberg entry) are converted with
:math:`E_\mathrm{Pauli} = 4E_S` (:math:`\vec\sigma\cdot\vec\sigma = 4\,\vec S\cdot\vec S`).
For the TFIM the run's :math:`\langle|m|\rangle = \langle|\sum_i\sigma^z_i|\rangle/N`
(summary observable ``abs_m``) is compared with the paper's
:math:`\langle|\sigma^z|\rangle` (QMC and NAQS columns).
"""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path

from distnqs.errors import DistnqsError
from distnqs.reference_data import literature

PAULI_PER_SPIN_HALF = 4.0  # sigma.sigma = 4 S.S


def _load_literature() -> dict:
    return literature()


def _load_run(outdir: Path) -> tuple[dict, dict]:
    cfg_path, summary_path = outdir / "config.toml", outdir / "summary.json"
    if not cfg_path.is_file():
        raise DistnqsError(f"{outdir} holds no config.toml: not a distnqs run directory")
    if not summary_path.is_file():
        raise DistnqsError(f"{outdir} has no summary.json yet (the run has not finished a step)")
    try:
        cfg = tomllib.loads(cfg_path.read_text())
        summary = json.loads(summary_path.read_text())
    except (OSError, ValueError) as exc:
        raise DistnqsError(f"cannot read the run in {outdir}: {exc}") from exc
    if summary.get("energy_per_site") is None:
        raise DistnqsError(f"{summary_path} holds no energy yet")
    return cfg, summary


def _rel(value, ref):
    return None if value is None or ref is None else abs(value - ref) / abs(ref)


def _describe_lattice(L, pbc) -> str:
    return f"{L}x{L} {'periodic' if pbc else 'open'}"


def _find_entry(lit: dict, model: str, L: int, pbc: bool, ham: dict) -> tuple[dict, float, dict]:
    """(entry, factor to Pauli units, abs_m entry or {}) of the literature value for this run."""
    bc = "pbc" if pbc else "obc"
    what = f"{model} on {_describe_lattice(L, pbc)}"
    if model == "tfim":
        G = ham.get("G")
        what += f" at G = {G}"
        for row in lit.get(f"tfim_square_{bc}", []):
            if row.get("L") == L and G is not None and abs(row.get("G", math.nan) - float(G)) < 1e-9:
                abs_m = next(
                    (r for r in lit.get(f"tfim_square_{bc}_abs_sigma_z", []) if r.get("L") == L and abs(r.get("G", math.nan) - float(G)) < 1e-9),
                    {},
                )
                return row, 1.0, abs_m
    elif model == "heisenberg":
        for row in lit.get(f"heisenberg_square_{bc}", []):
            if row.get("L") == L and "E_per_site_S" in row:
                return row, PAULI_PER_SPIN_HALF, {}
    elif model == "j1j2":
        J2 = ham.get("J2")
        J1 = ham.get("J1", ham.get("J", 1.0))
        what += f" at J2 = {J2}"
        if pbc and J2 is not None and float(J1) == 1.0 and abs(float(J2) - 0.5) < 1e-9:
            for row in lit.get("j1j2_square_pbc_J2_0.5", []):
                if row.get("L") == L and "E_per_site_S" in row:
                    return row, PAULI_PER_SPIN_HALF, {}
    raise DistnqsError(f"no literature value for {what} in the package's literature.json")


def compare_with_literature(outdir: Path) -> dict:
    r"""Energy per site and :math:`\langle|m|\rangle` of the run in ``outdir`` against literature.json.

    Returns a JSON-serializable dict: the run's values, the reference (in
    Pauli units, with its source), :math:`\epsilon_\mathrm{rel}`, and the
    paper's own NAQS number with its :math:`\epsilon_\mathrm{rel}` when known.
    Raises :class:`~distnqs.errors.DistnqsError` when the reference data or a
    matching entry is missing.
    """
    outdir = Path(outdir)
    cfg, summary = _load_run(outdir)
    lit = _load_literature()
    lat = cfg.get("lattice", {})
    ham = cfg.get("hamiltonian", {})
    model = ham.get("model")
    Lx = lat.get("Lx", lat.get("L"))
    Ly = lat.get("Ly", 1 if lat.get("kind") == "chain" else Lx)
    pbc = bool(lat.get("pbc", True))
    if Lx != Ly or lat.get("kind", "square") != "square":
        raise DistnqsError(f"no literature value for a {Lx}x{Ly} {lat.get('kind', 'square')} lattice (only L x L square lattices are tabulated)")
    J = float(ham.get("J", 1.0))
    if model in ("tfim", "heisenberg") and J != 1.0:
        raise DistnqsError(f"literature values are for J = 1; this run has J = {J}")
    entry, factor, abs_m_entry = _find_entry(lit, model, Lx, pbc, ham)

    key = "E_per_site_P" if factor == 1.0 else "E_per_site_S"
    ref = factor * float(entry[key])
    energy = float(summary["energy_per_site"])
    error = summary.get("energy_per_site_error")
    result = {
        "run": str(outdir),
        "model": model,
        "lattice": _describe_lattice(Lx, pbc),
        "G": ham.get("G"),
        "step": summary.get("step"),
        "n_steps": summary.get("n_steps"),
        "status": summary.get("status"),
        "energy_per_site": energy,
        "energy_per_site_error": error,
        "reference": {
            "energy_per_site": ref,
            "uncertainty": None if entry.get("uncertainty") is None else factor * float(entry["uncertainty"]),
            "source": entry.get("source", ""),
            "units": "Pauli" if factor == 1.0 else "Pauli (literature value in spin-1/2 units x 4)",
        },
        "difference": energy - ref,
        "relative_error": _rel(energy, ref),
        "paper_naqs": None,
        "others": {},
        "abs_m": None,
    }
    if "naqs_paper" in entry:
        paper = factor * float(entry["naqs_paper"])
        result["paper_naqs"] = {"energy_per_site": paper, "relative_error": _rel(paper, ref)}
    for other in ("dmrg_chi1024", "peps_paper", "best_nqs", "best_variational_S"):
        if other in entry:
            value = factor * float(entry[other])
            result["others"][other] = {"energy_per_site": value, "relative_error": _rel(value, ref)}
    run_abs_m = (summary.get("observables") or {}).get("abs_m")
    if abs_m_entry and run_abs_m is not None:
        qmc = abs_m_entry.get("qmc")
        paper = abs_m_entry.get("naqs_paper")
        result["abs_m"] = {
            "run": float(run_abs_m["mean"]),
            "run_error": run_abs_m.get("error"),
            "reference": qmc,
            "relative_error": _rel(float(run_abs_m["mean"]), qmc),
            "paper_naqs": paper,
            "paper_relative_error": _rel(paper, qmc),
        }
    return result


def _fmt(x, spec=".3e"):
    return "-" if x is None else format(x, spec)


def format_report(result: dict) -> str:
    """Human-readable table of :func:`compare_with_literature`'s result."""
    title = f"{result['model']} on {result['lattice']}" + (f", G = {result['G']}" if result.get("G") is not None else "")
    ref = result["reference"]
    lines = [
        f"run {result['run']}: {title} (step {result['step']}/{result['n_steps']}, {result['status']})",
        f"{'':24s} {'E / site':>14s} {'rel. error':>11s}",
        f"{'reference':24s} {ref['energy_per_site']:14.7f} {'':>11s}   {ref['source']}" + (f" [{ref['units']}]" if ref["units"] != "Pauli" else ""),
        f"{'this run':24s} {result['energy_per_site']:14.7f} {_fmt(result['relative_error']):>11s}"
        + (f"   ± {result['energy_per_site_error']:.1e}" if result.get("energy_per_site_error") is not None else ""),
    ]
    if result.get("paper_naqs"):
        p = result["paper_naqs"]
        lines.append(f"{'NAQS (Sharir et al.)':24s} {p['energy_per_site']:14.7f} {_fmt(p['relative_error']):>11s}")
    for name, o in result.get("others", {}).items():
        lines.append(f"{name:24s} {o['energy_per_site']:14.7f} {_fmt(o['relative_error']):>11s}")
    m = result.get("abs_m")
    if m:
        lines.append(f"{'':24s} {'<|sz|>':>14s} {'rel. error':>11s}")
        lines.append(f"{'QMC':24s} {_fmt(m['reference'], '14.5f')}")
        lines.append(f"{'this run':24s} {m['run']:14.5f} {_fmt(m['relative_error']):>11s}")
        if m.get("paper_naqs") is not None:
            lines.append(f"{'NAQS (Sharir et al.)':24s} {m['paper_naqs']:14.5f} {_fmt(m['paper_relative_error']):>11s}")
    if result["difference"] < 0:
        lines.append("note: the run lies below the reference (references carry their own error; see literature.json _conventions)")
    return "\n".join(lines)
