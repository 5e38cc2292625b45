"""``distnqs report D``: a run's energy against literature.json, in Pauli units.

The expected numbers are computed here from the package's literature.json
(never typed in), so a wrong unit conversion, a wrong entry or a wrong
relative error makes these tests fail.
"""

from __future__ import annotations

import json

import pytest
import tomli_w

from conftest import literature
from distnqs.cli import main
from distnqs.errors import DistnqsError
from distnqs.report import PAULI_PER_SPIN_HALF, compare_with_literature, format_report


def fake_run(path, hamiltonian: dict, L: int, energy: float, error: float = 1e-5, abs_m: float | None = None, pbc=False):
    """A run directory as ``distnqs run`` leaves it (config.toml + summary.json)."""
    path.mkdir()
    cfg = {"seed": 1, "n_steps": 10, "lattice": {"kind": "square", "Lx": L, "Ly": L, "pbc": pbc}, "hamiltonian": hamiltonian}
    (path / "config.toml").write_text(tomli_w.dumps(cfg))
    summary = {"step": 10, "n_steps": 10, "status": "finished", "energy_per_site": energy, "energy_per_site_error": error}
    if abs_m is not None:
        summary["observables"] = {"abs_m": {"mean": abs_m, "error": 1e-4}}
    (path / "summary.json").write_text(json.dumps(summary))
    return path


def _entry(key, **match):
    return next(r for r in literature()[key] if all(r.get(k) == v for k, v in match.items()))


def test_tfim_12x12_against_qmc_and_the_paper(tmp_path):
    ref = _entry("tfim_square_obc", L=12, G=3.0)
    mag = _entry("tfim_square_obc_abs_sigma_z", L=12, G=3.0)
    energy = ref["E_per_site_P"] * (1 - 3e-5)  # 3e-5 above the QMC value
    run = fake_run(tmp_path / "run", {"model": "tfim", "G": 3.0}, 12, energy, abs_m=mag["qmc"] * 1.01)
    result = compare_with_literature(run)
    assert result["reference"]["energy_per_site"] == ref["E_per_site_P"]
    assert result["relative_error"] == pytest.approx(3e-5, rel=1e-9)
    paper_rel = abs(ref["naqs_paper"] - ref["E_per_site_P"]) / abs(ref["E_per_site_P"])
    assert result["paper_naqs"]["relative_error"] == pytest.approx(paper_rel, rel=1e-12)
    assert result["abs_m"]["relative_error"] == pytest.approx(0.01, rel=1e-9)
    assert result["abs_m"]["paper_naqs"] == mag["naqs_paper"]
    text = format_report(result)
    assert "NAQS (Sharir et al.)" in text and "3.000e-05" in text


@pytest.mark.parametrize("L", [10, 16])
def test_heisenberg_values_converted_from_spin_half_units(tmp_path, L):
    r"""Literature Heisenberg values are :math:`\vec S\cdot\vec S` per site; a run is in Pauli units (x4)."""
    ref = _entry("heisenberg_square_obc", L=L)
    pauli = PAULI_PER_SPIN_HALF * ref["E_per_site_S"]
    assert PAULI_PER_SPIN_HALF == 4.0
    run = fake_run(tmp_path / "run", {"model": "heisenberg", "total_sz": 0}, L, pauli * (1 - 1e-4))
    result = compare_with_literature(run)
    assert result["reference"]["energy_per_site"] == pytest.approx(pauli, rel=1e-14)
    assert result["relative_error"] == pytest.approx(1e-4, rel=1e-9)
    assert result["paper_naqs"]["energy_per_site"] == pytest.approx(4 * ref["naqs_paper"], rel=1e-14)
    # the same energy read in spin-1/2 units would be 4x off: the conversion is not a no-op
    assert abs(result["relative_error"] - abs(pauli - ref["E_per_site_S"]) / abs(ref["E_per_site_S"])) > 1


def test_cli_prints_the_table_and_json(tmp_path, capsys):
    ref = _entry("tfim_square_obc", L=12, G=2.0)
    run = fake_run(tmp_path / "run", {"model": "tfim", "G": 2.0}, 12, ref["E_per_site_P"])
    assert main(["report", str(run)]) == 0
    assert "reference" in capsys.readouterr().out
    assert main(["report", str(run), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["relative_error"] == 0.0 and data["G"] == 2.0


@pytest.mark.parametrize(
    "hamiltonian, L, pbc, message",
    [
        ({"model": "tfim", "G": 2.7}, 12, False, "no literature value"),  # no such field
        ({"model": "tfim", "G": 3.0}, 9, False, "no literature value"),  # no such size
        ({"model": "tfim", "G": 3.0, "J": 2.0}, 12, False, "J = 1"),
    ],
)
def test_missing_reference_is_a_one_line_error(tmp_path, capsys, hamiltonian, L, pbc, message):
    run = fake_run(tmp_path / "run", hamiltonian, L, -3.0, pbc=pbc)
    with pytest.raises(DistnqsError, match=message):
        compare_with_literature(run)
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("distnqs: error:")


def test_not_a_run_directory(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a distnqs run directory" in capsys.readouterr().err
