"""Every config shipped under ``configs/`` is one a user can launch: it resolves with the loader of
the command its header names (``distnqs run|evolve|tomography|ising-vae``; ``run`` where none is
named), and every ``configs/...`` path its comments mention exists. A typo in a recorded-result or
benchmark config would otherwise surface only when someone starts a long run from it."""

import re

import pytest

from conftest import REPO
from distnqs import config
from distnqs.generative.ising import cli as ising_cli
from distnqs.generative.tomography import cli as tomo_cli

CONFIGS = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "configs").rglob("*.toml"))
LOADERS = {"run": config.load, "evolve": config.load,
           "tomography": tomo_cli.load_config, "ising-vae": ising_cli.load_config}


def _command(rel: str, text: str) -> str:
    """The subcommand of the ``distnqs <command> <rel>`` line in the file's comments (default run)."""
    found = re.findall(r"distnqs\s+([a-z-]+)\s+" + re.escape(rel) + r"\b", text)
    assert len(set(found)) <= 1, f"{rel}: its comments launch it with several commands {found}"
    return found[0] if found else "run"


def test_configs_are_found():
    assert len(CONFIGS) >= 20 and "configs/demo.toml" in CONFIGS


@pytest.mark.parametrize("rel", CONFIGS)
def test_shipped_config_resolves_and_names_existing_paths(rel):
    text = (REPO / rel).read_text()
    command = _command(rel, text)
    assert command in LOADERS, f"{rel}: unknown command 'distnqs {command}' in its comments"
    cfg = LOADERS[command](REPO / rel)
    assert isinstance(cfg, dict) and cfg
    if command == "evolve":
        assert "dynamics" in cfg, f"{rel}: launched with 'distnqs evolve' but has no [dynamics]"
    for named in set(re.findall(r"configs/[\w./-]+\.toml", text)):
        assert (REPO / named).is_file(), f"{rel} mentions {named}, which does not exist"
