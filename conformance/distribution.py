"""Which installed distribution (plugin name and version) a model class comes from."""

from __future__ import annotations

from functools import lru_cache
from importlib import metadata


@lru_cache(maxsize=1)
def _packages() -> dict[str, list[str]]:
    return dict(metadata.packages_distributions())


def distribution_of(cls: type) -> dict[str, str] | None:
    top = cls.__module__.split(".", 1)[0]
    names = _packages().get(top)
    if not names:
        return None
    name = names[0]
    try:
        return {"name": name, "version": metadata.version(name)}
    except metadata.PackageNotFoundError:
        return None
