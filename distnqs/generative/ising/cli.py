"""``distnqs ising-vae CONFIG --outdir D [--force] [--quiet]``: the whole Ising VAE study from a TOML file.

For every temperature of ``[monte_carlo] temperatures``:

1. Wolff Monte Carlo (:func:`~distnqs.generative.ising.wolff.run_wolff`) produces the
   training configurations; their ``<e>``, ``<|m|>``, ... are compared with the exact
   values (:mod:`~distnqs.generative.ising.exact`, ``L <= 8``);
2. every model of ``[vae] models`` (``dense``, ``conv``) is trained on them
   (:func:`~distnqs.generative.ising.vae.train_vae`), ``n_generate`` latent vectors
   ``z ~ N(0,1)`` are decoded and turned into spins by threshold and by Bernoulli
   decoding, and the statistics of the synthetic sets are computed;
3. plots: ``hist_T<T>.png`` (energy–magnetization histograms, training vs generated).

At the end: ``latent_<model>.png``, ``temperature_dependence.png``,
``training_curves.png``, ``results.md`` (table), ``summary.json`` and the HDF5 data
sets ``wolff_configs.h5`` and ``vae_generated.h5`` in ``D``. An existing
``D/summary.json`` is never overwritten without ``--force``.

PRNG keys: ``master = PRNGKey(seed)``; Monte Carlo at temperature index ``i`` uses
``fold_in(fold_in(master, 0), i)``; model ``k`` (dense = 0, conv = 1) at index ``i``
uses ``fold_in(fold_in(fold_in(master, 1), i), k)``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import tomllib
from pathlib import Path

import numpy as np

from distnqs.errors import ConfigError
from distnqs.io.files import atomic_write_text, check_outdir

MODEL_IDS = {"dense": 0, "conv": 1}

DEFAULT_TEMPERATURES = [1.5, 1.75, 2.0, 2.269, 2.5, 2.75, 3.0, 3.25, 3.5]

# section -> key -> (kind, default); kinds: int, float, bool, str, floats, ints, strs, table
SCHEMA: dict = {
    "": {"seed": ("int", 0)},
    "lattice": {"L": ("int", 8)},
    "monte_carlo": {
        "temperatures": ("floats", DEFAULT_TEMPERATURES),
        "n_configs": ("int", 400000),
        "n_replicas": ("int", 1000),
        "equilibration_sweeps": ("float", 50.0),
        "sweeps_per_sample": ("float", 1.0),
        "chunk_samples": ("int", 50),
    },
    "vae": {
        "models": ("strs", ["dense", "conv"]),
        "latent_dim": ("int", 2),
        "epochs": ("int", 10),
        "batch_size": ("int", 256),
        "learning_rate": ("float", 1e-3),
        "beta": ("float", 1.0),
        "n_train": ("int", 0),
        "n_eval": ("int", 10000),
        "n_generate": ("int", 100000),
        "n_latent_plot": ("int", 3000),
        "restarts": ("int", 1),
    },
    "vae.dense": {
        "encoder": ("ints", [32, 8, 16]),
        "decoder": ("ints", [16, 8, 32]),
        "epochs": ("int", None),
        "batch_size": ("int", None),
        "learning_rate": ("float", None),
        "restarts": ("int", None),
    },
    "vae.conv": {
        "filters": ("int", 16),
        "encoder_dense": ("int", 0),
        "decoder_channels": ("int", 1),
        "epochs": ("int", None),
        "batch_size": ("int", None),
        "learning_rate": ("float", None),
        "restarts": ("int", None),
    },
    "output": {"save_configs": ("bool", True), "save_generated": ("bool", True)},
}

TRAIN_KEYS = ("epochs", "batch_size", "learning_rate", "restarts")
OUTPUT_FILES = ("summary.json", "results.md", "wolff_configs.h5", "vae_generated.h5")


# ----------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------

def _check(kind: str, where: str, value):
    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    def is_num(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    ok = {
        "int": is_int(value),
        "float": is_num(value),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
        "floats": isinstance(value, list) and all(is_num(v) for v in value),
        "ints": isinstance(value, list) and all(is_int(v) for v in value),
        "strs": isinstance(value, list) and all(isinstance(v, str) for v in value),
    }[kind]
    if not ok:
        names = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
                 "floats": "a list of numbers", "ints": "a list of integers", "strs": "a list of strings"}
        raise ConfigError(f"{where} must be {names[kind]}, got {value!r}")
    if kind == "float":
        return float(value)
    if kind == "floats":
        return [float(v) for v in value]
    return value


def parse_config(raw: dict) -> dict:
    """Validate a parsed TOML document against :data:`SCHEMA` and fill in defaults; raises :class:`ConfigError`."""
    cfg: dict = {}
    sections = {"": raw}
    for name, value in raw.items():
        if name in SCHEMA and name:
            if not isinstance(value, dict):
                raise ConfigError(f"[{name}] must be a table")
            sections[name] = value
        elif name not in SCHEMA[""]:
            raise ConfigError(f"unknown config key {name!r} (known: {', '.join(sorted(k for k in SCHEMA if k) + sorted(SCHEMA['']))})")
    vae_raw = sections.get("vae", {})
    for sub in ("dense", "conv"):
        if sub in vae_raw:
            if not isinstance(vae_raw[sub], dict):
                raise ConfigError(f"[vae.{sub}] must be a table")
            sections[f"vae.{sub}"] = vae_raw[sub]
    for sec, spec in SCHEMA.items():
        given = dict(sections.get(sec, {}))
        if sec == "":
            given = {k: v for k, v in given.items() if k not in SCHEMA}
        if sec == "vae":
            given.pop("dense", None)
            given.pop("conv", None)
        out = {}
        for key, value in given.items():
            if key not in spec:
                label = f"[{sec}] " if sec else ""
                raise ConfigError(f"unknown config key {label}{key!r} (known: {', '.join(spec)})")
            out[key] = _check(spec[key][0], f"{sec + '.' if sec else ''}{key}", value)
        for key, (_, default) in spec.items():
            out.setdefault(key, list(default) if isinstance(default, list) else default)
        cfg[sec] = out
    _validate(cfg)
    return cfg


def _validate(cfg: dict) -> None:
    L = cfg["lattice"]["L"]
    mc, vae = cfg["monte_carlo"], cfg["vae"]
    if not 3 <= L <= 64:
        raise ConfigError(f"lattice.L must be between 3 and 64, got {L}")
    if not mc["temperatures"]:
        raise ConfigError("monte_carlo.temperatures must not be empty")
    if any(not (t > 0 and math.isfinite(t)) for t in mc["temperatures"]):
        raise ConfigError(f"monte_carlo.temperatures must be positive, got {mc['temperatures']}")
    if len(set(mc["temperatures"])) != len(mc["temperatures"]):
        raise ConfigError("monte_carlo.temperatures must not repeat a value")
    if mc["n_replicas"] < 2:
        raise ConfigError(f"monte_carlo.n_replicas must be >= 2, got {mc['n_replicas']}")
    if mc["n_configs"] < mc["n_replicas"] or mc["n_configs"] % mc["n_replicas"]:
        raise ConfigError(f"monte_carlo.n_configs ({mc['n_configs']}) must be a positive multiple of "
                          f"monte_carlo.n_replicas ({mc['n_replicas']})")
    if mc["equilibration_sweeps"] < 0 or mc["sweeps_per_sample"] <= 0 or mc["chunk_samples"] < 1:
        raise ConfigError("monte_carlo: equilibration_sweeps must be >= 0, sweeps_per_sample > 0, chunk_samples >= 1")
    unknown = [m for m in vae["models"] if m not in MODEL_IDS]
    if unknown or len(set(vae["models"])) != len(vae["models"]):
        raise ConfigError(f"vae.models must be distinct names from {list(MODEL_IDS)}, got {vae['models']}")
    if "conv" in vae["models"] and L % 2:
        raise ConfigError(f"the conv VAE needs an even lattice.L, got {L}")
    if vae["latent_dim"] < 1:
        raise ConfigError(f"vae.latent_dim must be >= 1, got {vae['latent_dim']}")
    n_train = vae["n_train"] or mc["n_configs"]
    if vae["n_train"] < 0 or n_train > mc["n_configs"]:
        raise ConfigError(f"vae.n_train must be between 0 (all) and monte_carlo.n_configs ({mc['n_configs']}), got {vae['n_train']}")
    for name in vae["models"]:
        tr = training_settings(cfg, name)
        if tr["epochs"] < 1:
            raise ConfigError(f"vae epochs must be >= 1 for {name}, got {tr['epochs']}")
        if not 1 <= tr["batch_size"] <= n_train:
            raise ConfigError(f"vae batch_size ({tr['batch_size']}) for {name} must be between 1 and the "
                              f"number of training configurations ({n_train})")
        if not tr["learning_rate"] > 0:
            raise ConfigError(f"vae learning_rate must be positive for {name}, got {tr['learning_rate']}")
        if tr["restarts"] < 1:
            raise ConfigError(f"vae restarts must be >= 1 for {name}, got {tr['restarts']}")
    for key in ("n_generate", "n_eval", "n_latent_plot"):
        if vae[key] < 2:
            raise ConfigError(f"vae.{key} must be >= 2, got {vae[key]}")
    if vae["beta"] < 0:
        raise ConfigError(f"vae.beta must be >= 0, got {vae['beta']}")
    d = cfg["vae.dense"]
    if not d["encoder"] or not d["decoder"] or min(d["encoder"] + d["decoder"]) < 1:
        raise ConfigError("vae.dense.encoder and vae.dense.decoder must be non-empty lists of positive widths")
    c = cfg["vae.conv"]
    if c["filters"] < 1 or c["encoder_dense"] < 0 or c["decoder_channels"] < 1:
        raise ConfigError("vae.conv: filters and decoder_channels must be >= 1, encoder_dense >= 0")
    memory_estimate(cfg, check=True)


def memory_estimate(cfg: dict, check: bool = False) -> int:
    r"""Bytes the job holds at its peak, to an order of magnitude: the Wolff configurations
    (:math:`T \cdot n_{configs} \cdot L^2` int8), the training set as float32, the
    generated and evaluation configurations (float32), and the VAEs' parameters (with gradients
    and Adam moments) and the activations of one batch. With ``check``, a job above the
    machine's memory is refused (:class:`ConfigError`)."""
    from distnqs.memory import refuse_above_machine

    L2, mc, vae = cfg["lattice"]["L"] ** 2, cfg["monte_carlo"], cfg["vae"]
    n_train = vae["n_train"] or mc["n_configs"]
    need = len(mc["temperatures"]) * L2 * (mc["n_configs"] + 4 * (n_train + vae["n_generate"] + vae["n_eval"]))
    d, c = cfg["vae.dense"], cfg["vae.conv"]
    widths = [L2, *d["encoder"], 2 * vae["latent_dim"], *d["decoder"], L2]
    n_params = sum(a * b for a, b in zip(widths, widths[1:])) + 2 * c["filters"] * (9 * c["filters"] + L2 * vae["latent_dim"])
    batch = max(training_settings(cfg, m)["batch_size"] for m in vae["models"]) if vae["models"] else 1
    need += 4 * 4 * n_params + 4 * batch * (sum(widths) + c["filters"] * L2 * (1 + c["decoder_channels"]))
    if check:
        refuse_above_machine(need, f"L = {cfg['lattice']['L']}, {len(mc['temperatures'])} temperatures x {mc['n_configs']} configurations, "
                                   f"{vae['n_generate']} generated, {n_params} VAE parameters")
    return need


def training_settings(cfg: dict, name: str) -> dict:
    """Epochs, batch size, learning rate and restarts for model ``name`` (its own table overrides ``[vae]``)."""
    own = cfg[f"vae.{name}"]
    return {k: (own[k] if own.get(k) is not None else cfg["vae"][k]) for k in TRAIN_KEYS}


def load_config(path) -> dict:
    """Read and validate a TOML config file; every problem is a one-line :class:`ConfigError`."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        with open(p, "rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"malformed TOML in {p}: {str(exc).splitlines()[0]}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror}") from None
    return parse_config(raw)


# ----------------------------------------------------------------------------
# progress display
# ----------------------------------------------------------------------------

class _Progress:
    """Progress on stderr: permanent lines, and transient updates (rewritten in place on a terminal)."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self._last = 0.0
        self._width = 0

    def line(self, msg: str) -> None:
        if self.quiet:
            return
        if self.tty and self._width:
            sys.stderr.write("\r" + " " * self._width + "\r")
            self._width = 0
        sys.stderr.write(msg + "\n")
        sys.stderr.flush()

    def update(self, msg: str) -> None:
        if self.quiet or not self.tty:
            return
        now = time.monotonic()
        if now - self._last < 0.2:
            return
        self._last = now
        pad = max(0, self._width - len(msg))
        sys.stderr.write("\r" + msg + " " * pad)
        sys.stderr.flush()
        self._width = len(msg)


# ----------------------------------------------------------------------------
# the study
# ----------------------------------------------------------------------------

def _latent_stats(mu: np.ndarray, logvar: np.ndarray, m: np.ndarray) -> dict:
    """``max_k |corr(mu_k, m)|``, mean posterior width ``<exp(logvar/2)>`` and the spread of ``mu`` per latent axis."""
    corr = []
    for k in range(mu.shape[1]):
        if mu[:, k].std() > 0 and m.std() > 0:
            corr.append(abs(float(np.corrcoef(mu[:, k], m)[0, 1])))
        else:
            corr.append(0.0)
    return {"max_abs_corr_m": max(corr), "abs_corr_m": corr,
            "mean_sigma": float(np.exp(0.5 * logvar).mean()),
            "mu_std": [float(v) for v in mu.std(axis=0)]}


def run_study(cfg: dict, outdir: Path, progress: _Progress) -> dict:
    """Run Monte Carlo, training, generation and analysis for every temperature; write all outputs into ``outdir``."""
    import jax

    from distnqs.generative.ising import T_C
    from distnqs.generative.ising import analysis as an
    from distnqs.generative.ising import vae as V
    from distnqs.generative.ising.exact import MAX_TRANSFER_L, exact_observables
    from distnqs.generative.ising.wolff import magnetization, run_wolff

    t_start = time.perf_counter()
    L = cfg["lattice"]["L"]
    mc, vcfg = cfg["monte_carlo"], cfg["vae"]
    models = list(vcfg["models"])
    temps = list(mc["temperatures"])
    master = jax.random.PRNGKey(cfg[""]["seed"])
    mc_root, vae_root = jax.random.fold_in(master, 0), jax.random.fold_in(master, 1)
    data_h5, gen_h5 = outdir / "wolff_configs.h5", outdir / "vae_generated.h5"
    summary = {
        "study": "Wolff Monte Carlo + VAE of classical 2D Ising configurations (Yevick, EPJ B 95, 54 (2022))",
        "conventions": "H = -sum_<ij> s_i s_j, periodic L x L, spins +1/-1, k_B = 1; e = H/N, m = sum s_i / N",
        "L": L, "T_c": T_C, "models": models,
        "config": {sec or "top": vals for sec, vals in cfg.items()},
        "temperatures": [],
    }
    latent_items: dict = {name: [] for name in models}
    n_train = vcfg["n_train"] or mc["n_configs"]

    for it, T in enumerate(temps):
        head = f"[{it + 1}/{len(temps)}] T={T:g}"
        # ---------------- Monte Carlo ----------------
        res = run_wolff(jax.random.fold_in(mc_root, it), L, T, mc["n_configs"], mc["n_replicas"],
                        equilibration_sweeps=mc["equilibration_sweeps"],
                        sweeps_per_sample=mc["sweeps_per_sample"], chunk_samples=mc["chunk_samples"],
                        progress=lambda d, n: progress.update(f"{head} Wolff: {d}/{n} samples per replica"))
        training = an.dataset_stats(res.spins, T)
        exact = exact_observables(L, T) if L <= MAX_TRANSFER_L else None
        entry = {
            "T": T,
            "exact": exact.as_dict() if exact is not None else None,
            "training": training,
            "wolff": {"n_configs": res.n_configs, "n_replicas": mc["n_replicas"],
                      "flips_per_sample": res.flips_per_sample, "equilibration_flips": res.equilibration_flips,
                      "mean_cluster_size": res.mean_cluster_size, "seconds": res.seconds,
                      "configs_per_second": res.configs_per_second},
            "models": {},
        }
        ex_txt = f" (exact {exact.E_per_site:.4f}, {exact.abs_m:.4f})" if exact is not None else ""
        progress.line(f"{head} Wolff: {res.n_configs} configs in {res.seconds:.1f} s "
                      f"({res.configs_per_second:,.0f}/s, {res.flips_per_sample} flips/sample, <|C|>={res.mean_cluster_size:.1f}); "
                      f"<e>={training['E_per_site']:.4f}+-{training['E_per_site_err']:.4f}, "
                      f"<|m|>={training['abs_m']:.4f}+-{training['abs_m_err']:.4f}{ex_txt}")
        configs = res.configs
        mags = magnetization(configs)
        if cfg["output"]["save_configs"]:
            from distnqs.generative.ising.wolff import energy_per_site
            an.save_h5(data_h5, f"T_{T:.4f}", {"spins": configs, "energy_per_site": energy_per_site(configs),
                                               "magnetization": mags},
                       {"T": T, "L": L, "n_replicas": mc["n_replicas"], "flips_per_sample": res.flips_per_sample,
                        "layout": "row s * n_replicas + r is sample s of replica r"})
        train_set = configs[:n_train]
        panels = [(f"Wolff (training), n={len(configs)}", configs)]

        # ---------------- VAEs ----------------
        for name in models:
            tr = training_settings(cfg, name)
            arch = {k: v for k, v in cfg[f"vae.{name}"].items() if k not in TRAIN_KEYS}
            model = V.make_model(name, L, vcfg["latent_dim"], **arch)
            k_model = jax.random.fold_in(jax.random.fold_in(vae_root, it), MODEL_IDS[name])
            k_train, k_gen, k_bern = jax.random.split(k_model, 3)
            # ``restarts`` independent initializations (restart r > 0 uses fold_in(k_train, r));
            # the one with the lowest final -ELBO on the evaluation set is kept
            result, restart_losses = None, []
            for r in range(tr["restarts"]):
                k_r = k_train if r == 0 else jax.random.fold_in(k_train, r)
                tag = f" (restart {r + 1}/{tr['restarts']})" if tr["restarts"] > 1 else ""
                res_r = V.train_vae(model, train_set, k_r, epochs=tr["epochs"], batch_size=tr["batch_size"],
                                    learning_rate=tr["learning_rate"], beta=vcfg["beta"], n_eval=vcfg["n_eval"],
                                    progress=lambda e, n, l, nm=name, tg=tag: progress.update(
                                        f"{head} {nm} VAE{tg}: epoch {e}/{n}, -ELBO {l:.3f}"))
                restart_losses.append(res_r.final["loss"])
                if result is None or res_r.final["loss"] < result.final["loss"]:
                    if result is not None:
                        res_r.seconds += result.seconds
                    result = res_r
                else:
                    result.seconds += res_r.seconds
            probs = V.generate_probabilities(result.params, model, k_gen, vcfg["n_generate"])
            thr = V.decode_threshold(probs)
            bern = V.decode_bernoulli(probs, k_bern)
            del probs
            n_lat = min(vcfg["n_latent_plot"], len(train_set))
            mu, logvar = V.encode(result.params, model, train_set[:n_lat])
            latent_items[name].append((T, mu, mags[:n_lat]))
            st_thr, st_bern = an.dataset_stats(thr, T), an.dataset_stats(bern, T)
            for st in (st_thr, st_bern):
                st["E_excess"] = st["E_per_site"] - training["E_per_site"]
                st["abs_m_excess"] = st["abs_m"] - training["abs_m"]
            entry["models"][name] = {
                "n_train": len(train_set), "training": tr, "train_seconds": result.seconds,
                "restart_losses": restart_losses, "best_restart": int(np.argmin(restart_losses)),
                "elbo_initial": result.initial, "elbo": result.final, "history": result.history,
                "threshold": st_thr, "bernoulli": st_bern,
                "latent": _latent_stats(mu, logvar, mags[:n_lat]),
            }
            progress.line(f"{head} {name} VAE: {tr['restarts']} x {tr['epochs']} epochs in {result.seconds:.1f} s, "
                          f"-ELBO {result.initial['loss']:.2f} -> {result.final['loss']:.2f} "
                          f"(KL {result.final['kl']:.2f}); generated <e> thr {st_thr['E_per_site']:.3f} "
                          f"bern {st_bern['E_per_site']:.3f} (training {training['E_per_site']:.3f}), "
                          f"<|m|> thr {st_thr['abs_m']:.3f} bern {st_bern['abs_m']:.3f} (training {training['abs_m']:.3f})")
            panels += [(f"{name} VAE, threshold", thr), (f"{name} VAE, Bernoulli", bern)]
            if cfg["output"]["save_generated"]:
                from flax.traverse_util import flatten_dict
                flat = {"params/" + "/".join(k): np.asarray(v) for k, v in
                        flatten_dict(jax.device_get(result.params)).items()}
                an.save_h5(gen_h5, f"T_{T:.4f}/{name}",
                           {"threshold": thr, "bernoulli": bern, "latent_mu": mu, "latent_logvar": logvar, **flat},
                           {"T": T, "L": L, "latent_dim": vcfg["latent_dim"],
                            "latent_mu_of": "the first n rows of the training set"})
        hist_name = f"hist_T{T:.3f}.png"
        an.plot_em_histograms(outdir / hist_name, T, panels, exact_E=exact.E_per_site if exact is not None else None)
        entry["plot"] = hist_name
        summary["temperatures"].append(entry)

    plots = [t["plot"] for t in summary["temperatures"]]
    for name in models:
        an.plot_latent(outdir / f"latent_{name}.png", name, latent_items[name])
        plots.append(f"latent_{name}.png")
    an.plot_temperature_dependence(outdir / "temperature_dependence.png", summary)
    an.plot_training_curves(outdir / "training_curves.png", summary)
    plots += ["temperature_dependence.png", "training_curves.png"]
    table = an.results_table_markdown(summary)
    (outdir / "results.md").write_text(table)
    summary["results_table_markdown"] = table
    summary["files"] = {"plots": plots, "results_table": "results.md",
                        "data": [f for f, on in (("wolff_configs.h5", cfg["output"]["save_configs"]),
                                                 ("vae_generated.h5", cfg["output"]["save_generated"])) if on]}
    summary["timing"] = {
        "total_seconds": time.perf_counter() - t_start,
        "wolff_seconds": sum(t["wolff"]["seconds"] for t in summary["temperatures"]),
        "train_seconds": sum(m["train_seconds"] for t in summary["temperatures"] for m in t["models"].values()),
    }
    atomic_write_text(outdir / "summary.json", json.dumps(summary, indent=1, default=float))
    return summary


def main(argv: list[str]) -> int:
    """Entry point of ``distnqs ising-vae``; returns the exit status (config problems raise :class:`ConfigError`)."""
    parser = argparse.ArgumentParser(prog="distnqs ising-vae",
                                     description="Wolff Monte Carlo + VAE study of classical 2D Ising configurations.")
    parser.add_argument("config", help="TOML configuration (see configs/ising_vae.toml)")
    parser.add_argument("--outdir", required=True, help="output directory (summary.json, PNGs, HDF5 data)")
    parser.add_argument("--force", action="store_true", help="overwrite the results of an existing output directory")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    args = parser.parse_args(argv)
    cfg = load_config(args.config)
    outdir = check_outdir(args.outdir, args.force)
    outdir.mkdir(parents=True, exist_ok=True)
    for name in OUTPUT_FILES:  # start clean: HDF5 files are appended to group by group
        (outdir / name).unlink(missing_ok=True)
    progress = _Progress(args.quiet)
    t0 = time.perf_counter()
    summary = run_study(cfg, outdir, progress)
    progress.line(f"done in {time.perf_counter() - t0:.1f} s: {outdir / 'summary.json'}")
    if not args.quiet:
        sys.stderr.write(summary["results_table_markdown"])
    return 0
