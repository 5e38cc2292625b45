"""``distnqs info D``: status, step, latest energy and checkpoints of a run directory."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from distnqs.errors import DistnqsError
from distnqs.io import checkpoint
from distnqs.io.log import read_log


def describe_run(outdir: Path) -> str:
    if not outdir.is_dir():
        raise DistnqsError(f"{outdir} is not a directory")
    if not (outdir / "config.toml").exists() and not checkpoint.list_checkpoints(outdir):
        raise DistnqsError(f"{outdir} holds no distnqs run (no config.toml, no checkpoint)")
    lines = [f"run directory: {outdir}"]
    summary = None
    if (outdir / "summary.json").exists():
        try:
            summary = json.loads((outdir / "summary.json").read_text())
        except ValueError:
            lines.append("summary.json: unreadable")
    log = None
    if (outdir / "log.h5").exists():
        try:
            log = read_log(outdir / "log.h5")
        except OSError as exc:
            lines.append(f"log.h5: unreadable ({exc})")
    n_steps = summary.get("n_steps") if summary else None
    if summary:
        lines.append(f"status: {summary['status']} at step {summary['step']}/{summary['n_steps']} on {summary['n_ranks']} rank(s)")
    elif log is not None and log["step"].size:
        age = time.time() - (outdir / "log.h5").stat().st_mtime
        lines.append(f"status: running or interrupted at step {int(log['step'][-1]) + 1} (log written {age:.0f} s ago)")
    else:
        lines.append("status: not started")
    if log is not None and log["step"].size:
        last = {k: v[-1] for k, v in log.items()}
        sps = np.median(log["seconds_per_step"][-50:])
        lines.append(
            f"latest energy (step {int(last['step']) + 1}): {last['energy_mean']:.8f} ± {last['energy_error']:.8f}"
            f"  (variance {last['energy_variance']:.4g}, R_hat {last['R_hat']:.3f}, acceptance {last['acceptance']:.2f})"
        )
        if "t" in last:  # an evolution (distnqs evolve)
            lines.append(f"latest time t = {last['t']:.6g}: <sx> = {last['sx']:.6f} ± {last['sx_error']:.6f}, "
                         f"<szsz> = {last['szsz']:.6f} ± {last['szsz_error']:.6f}, TDVP residual {last['tdvp_residual']:.3g}")
        lines.append(f"speed: {sps:.3g} s/step, {np.median(log['samples_per_second'][-50:]):.4g} samples/s")
        if n_steps:
            lines.append(f"remaining: {max(0, n_steps - int(last['step']) - 1)} steps, about {max(0, n_steps - int(last['step']) - 1) * sps:.0f} s")
    if summary and summary.get("energy_per_site") is not None:
        msg = f"energy per site: {summary['energy_per_site']:.8f} ± {summary['energy_per_site_error']:.8f}"
        if summary.get("reference"):
            msg += f"  (reference {summary['reference']['energy_per_site']:.8f}, relative error {summary['reference']['relative_error']:.2e})"
        lines.append(msg)
    ckpts = checkpoint.list_checkpoints(outdir)
    lines.append(f"checkpoints: {len(ckpts)}")
    for step, path in ckpts:
        try:
            checkpoint.read(path)
            ok = "ok"
        except DistnqsError as exc:
            ok = f"DAMAGED: {exc}"
        lines.append(f"  {path.name}  step {step}  {path.stat().st_size / 1e6:.2f} MB  {ok}")
    return "\n".join(lines)
