"""The JSON report of one run (schema ``llm-conformance-report/1``, see docs/CONTRACTS.md)."""

from __future__ import annotations

import datetime
import json
import platform
import sys
from pathlib import Path
from typing import Any

from . import adapter, features
from .outcomes import ClassRun

SCHEMA = "llm-conformance-report/1"


def suite_version() -> str:
    from . import __version__

    return __version__


def build(run: ClassRun) -> dict[str, Any]:
    info = adapter.info()
    finished = run.finished or run.started
    return {
        "schema": SCHEMA,
        "suite_version": suite_version(),
        "adapter_version": info.version,
        "adapter_active": info.active,
        "llm_version": features.llm_version(),
        "python_version": platform.python_version(),
        "platform": f"{sys.platform}-{platform.machine()}",
        "plugin": run.plugin,
        "model_id": run.model_id,
        "cell": run.cell,
        "isolation": run.isolation,
        "started": datetime.datetime.fromtimestamp(run.started, datetime.timezone.utc)
        .isoformat()
        .replace("+00:00", "Z"),
        "duration_s": round(max(0.0, finished - run.started), 3),
        "clauses": [result.as_dict() for result in run.ordered()],
        "summary": run.summary(),
    }


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def paths_for(path: Path, runs: list[ClassRun]) -> list[tuple[Path, ClassRun]]:
    """One file per test class: the path itself for one run, ``NAME-<model>.json`` for
    several, ``NAME-<model>-<TestClass>.json`` where two classes check the same model."""
    if len(runs) == 1:
        return [(path, runs[0])]
    models = [_safe(str(run.model_id)) for run in runs]
    out = []
    for run, model in zip(runs, models, strict=True):
        name = model
        if models.count(model) > 1:
            name += "-" + _safe(run.nodeid.rsplit("::", 1)[-1])
        out.append((path.with_name(f"{path.stem}-{name}{path.suffix or '.json'}"), run))
    return out


def write(path: Path, runs: list[ClassRun]) -> list[Path]:
    written = []
    for target, run in paths_for(path, runs):
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(build(run), indent=2) + "\n")
        written.append(target)
    return written
