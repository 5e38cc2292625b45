"""Reference values shipped inside the package (``distnqs/data/``).

The installed package never reads a file outside itself: ``distnqs report``
and the tomography POVM take their published values from package data, read
with :mod:`importlib.resources` so that a wheel, an editable install and a
clone behave the same.
"""

from __future__ import annotations

import functools
import json
from importlib import resources

from distnqs.errors import DistnqsError

LITERATURE = "literature.json"


@functools.cache
def _load(name: str) -> dict:
    res = resources.files("distnqs") / "data" / name
    try:
        return json.loads(res.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # a broken install, not a user error
        raise DistnqsError(f"package data distnqs/data/{name} cannot be read ({exc}); reinstall distnqs") from exc


def literature() -> dict:
    """The parsed ``literature.json`` (a fresh copy; callers may modify it)."""
    return json.loads(json.dumps(_load(LITERATURE)))
