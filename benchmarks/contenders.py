"""In a benchmark worker: load llm with exactly the wanted plugins; hand out each contender's model.

A worker is one process of one adapter kind: ``0.2`` (this repository's adapter) or ``0.1``
(the released ``llm-all-models-async==0.1``, installed in its own virtual environment under
the same import name). Contenders are named the same way everywhere:

- ``sync``: llm's own sync path on the sync benchmark model;
- ``native``: a native ``llm.AsyncModel`` producing the same chunks;
- ``adapter``: the 0.2 adapter's async twin of the sync model (thread isolation);
- ``process``: the same twin with ``LLM_ASYNC_ISOLATION=process`` (its jobs carry
  :data:`PROCESS_ENV`, so it runs in a benchmark worker of its own);
- ``v0.1``: the 0.1 adapter's async twin of the sync model.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

ADAPTER_DIST = "llm-all-models-async"
KIND_ENV = "BENCH_ADAPTER"
PLUGINS_ENV = "BENCH_PLUGINS"
REPO_ROOT = Path(__file__).resolve().parent.parent

SYNC_CONTENDERS = frozenset({"sync"})
TWIN_CONTENDERS = {"adapter": "0.2", "process": "0.2", "v0.1": "0.1"}
ALL_CONTENDERS = ("adapter", "native", "process", "sync", "v0.1")
PROCESS_ENV = (("LLM_ASYNC_ISOLATION", "process"),)

_models: dict[tuple[str, str], Any] = {}
_state: dict[str, Any] = {"kind": None, "options_patched": False}


def kind_of(contender: str) -> str:
    """The worker kind a contender runs in (``0.1`` only for the released adapter)."""
    return TWIN_CONTENDERS.get(contender, "0.2")


def prepare(kind: str) -> dict[str, Any]:
    """Set up this process for ``kind`` and load llm; returns facts about what was loaded.

    Must run before anything imports llm: it fixes ``LLM_USER_PATH`` and stops llm from
    loading every installed plugin, then registers the adapter, the benchmark models and any
    plugin modules named in ``BENCH_PLUGINS`` by hand.
    """
    if "llm" in sys.modules:
        raise RuntimeError("contenders.prepare() must run before llm is imported")
    os.environ.setdefault("LLM_USER_PATH", tempfile.mkdtemp(prefix="bench-llm-user-"))
    os.environ["LLM_LOAD_PLUGINS"] = ""
    if kind == "0.1":
        # The 0.1 release shares our import name: never let the work tree shadow it.
        root = str(REPO_ROOT)
        sys.path[:] = [p for p in sys.path if p not in ("", ".", root)]
    import llm
    import llm.plugins

    from . import models

    info: dict[str, Any] = {
        "kind": kind,
        "python": sys.version.split()[0],
        "python_implementation": sys.implementation.name,
        "executable": sys.executable,
        "llm_version": metadata.version("llm"),
        "adapter_version": None,
        "adapter_active": None,
        "adapter_error": None,
        "adapter_file": None,
        "plugins": [],
    }
    llm.plugins.pm.register(models, name="llm_all_models_async_benchmarks")
    try:
        _register_adapter(kind, info)
    except Exception as error:  # reported to the orchestrator, which skips the contender
        info["adapter_error"] = f"{type(error).__name__}: {error}"
    for name in filter(None, os.environ.get(PLUGINS_ENV, "").split(",")):
        module = importlib.import_module(name)
        llm.plugins.pm.register(module, name=name)
        info["plugins"].append(name)
    llm.plugins.load_plugins()
    _state["kind"] = kind
    return info


def _register_adapter(kind: str, info: dict[str, Any]) -> None:
    import llm.plugins

    if kind == "0.1":
        module = importlib.import_module("llm_all_models_async")
        info["adapter_version"] = metadata.version(ADAPTER_DIST)
        info["adapter_file"] = getattr(module, "__file__", None)
        info["adapter_active"] = True
        llm.plugins.pm.register(module, name="all_models_async")
        return
    package = importlib.import_module("llm_all_models_async")
    plugin = importlib.import_module("llm_all_models_async.plugin")
    info["adapter_file"] = getattr(package, "__file__", None)
    info["adapter_version"] = _local_version(package)
    info["adapter_source_sha"] = source_digest(Path(package.__file__).parent)
    info["adapter_active"] = bool(getattr(package, "ACTIVE", True))
    if not info["adapter_active"]:
        info["adapter_error"] = f"adapter inactive: {getattr(package, 'INACTIVE_REASON', None)}"
    if not llm.plugins.pm.is_registered(plugin):
        llm.plugins.pm.register(plugin, name="llm_all_models_async")


def source_digest(directory: Path) -> str:
    """A short digest of a package's ``.py`` files: tells whether two workers ran the same code."""
    digest = hashlib.sha256()
    for path in sorted(directory.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def _local_version(package: Any) -> str:
    version = getattr(package, "__version__", None)
    if version:
        return str(version)
    try:
        return metadata.version(ADAPTER_DIST)
    except metadata.PackageNotFoundError:
        return "work tree"


def options_patched() -> bool:
    """True once a 0.1 twin had its missing ``Options`` replaced by the sync model's."""
    return bool(_state["options_patched"])


def model_for(contender: str, model_id: str | None = None) -> Any:
    """The model object a contender drives (cached, so state such as limiters persists)."""
    import llm

    from . import models

    key = (contender, model_id or "")
    if key in _models:
        return _models[key]
    if contender == "sync":
        model = llm.get_model(model_id or models.SYNC_ID)
    elif contender == "native":
        model = llm.get_async_model(model_id or models.NATIVE_ID)
    elif contender in TWIN_CONTENDERS:
        if TWIN_CONTENDERS[contender] != _state["kind"]:
            raise RuntimeError(f"{contender} cannot run in a {_state['kind']} worker")
        model = llm.get_async_model(model_id or models.SYNC_ID)
        check_twin(contender, model)
    else:
        raise ValueError(f"unknown contender {contender!r}")
    _models[key] = model
    return model


def check_twin(contender: str, model: Any) -> None:
    """Raise unless ``model`` is the twin ``contender`` names; give a 0.1 twin its Options."""
    if contender in ("adapter", "process"):
        import llm_all_models_async as lama

        if not lama.is_twin(model):
            raise RuntimeError(f"{model!r} is not a twin of the 0.2 adapter")
        return
    sync_model = getattr(model, "_sync_model", None)
    if sync_model is None:
        raise RuntimeError(f"{model!r} is not a twin of the 0.1 adapter")
    if model.Options is not sync_model.Options:
        # 0.1 drops the model's Options, so every option fails; patch it at run time.
        model.Options = sync_model.Options
        _state["options_patched"] = True


def effective_setting(contender: str, name: str, model_id: str | None = None) -> Any:
    """The adapter setting ``name`` in force for the sync benchmark model (None for others)."""
    if contender not in ("adapter", "process"):
        return None
    from llm_all_models_async import settings

    from . import models

    return getattr(settings.resolve(model_id or models.SYNC_ID), name)


def stop_workers() -> None:
    """Stop the process contender's warm workers and wait for them (a cold start follows)."""
    from llm_all_models_async.process import pool

    workers = pool.all_workers()
    pool.shutdown()
    for worker in workers:
        worker.exited.wait(30)


def worker_rss_mib() -> list[float]:
    """Resident memory of this process's live adapter workers, in MiB."""
    from llm_all_models_async.process import pool, registry

    sizes = [registry.rss_bytes(worker.pid) for worker in pool.all_workers() if worker.pid]
    return [size / 2**20 for size in sizes if size]
