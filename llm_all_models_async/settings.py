"""Effective settings per model: defaults, the per-model JSON file, then environment variables.

Every value is validated where it is read; a bad one raises :class:`SettingError` naming the
variable (or the file entry) and what it accepts, because a silently ignored limit is worse
than a crash.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import SettingError

ENV_PREFIX = "LLM_ASYNC_"
SETTINGS_FILENAME = "llm-all-models-async.json"
AFFINITIES = ("any", "model")
ISOLATIONS = ("thread", "process")


def _parse_positive_int(raw: str) -> int:
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise ValueError("a whole number of at least 1") from None
    if value < 1:
        raise ValueError("a whole number of at least 1")
    return value


def _parse_seconds(raw: str) -> float | None:
    text = str(raw).strip().lower()
    if text in ("", "none", "off"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError("a number of seconds greater than 0, or 'none'") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError("a number of seconds greater than 0, or 'none'")
    return value


def _parse_affinity(raw: str) -> str:
    value = str(raw).strip().lower()
    if value not in AFFINITIES:
        raise ValueError("one of " + ", ".join(repr(a) for a in AFFINITIES))
    return value


def _parse_isolation(raw: str) -> str:
    value = str(raw).strip().lower()
    if value not in ISOLATIONS:
        raise ValueError("one of " + ", ".join(repr(i) for i in ISOLATIONS))
    return value


@dataclasses.dataclass(frozen=True)
class Spec:
    """One setting: its name, parser, default, and whether a model may override it."""

    name: str
    parse: Callable[[str], Any]
    default: Any
    per_model: bool
    help: str

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.name.upper()


SPECS: dict[str, Spec] = {
    spec.name: spec
    for spec in (
        Spec(
            "buffer",
            _parse_positive_int,
            1024,
            True,
            "chunks out of the generator and not yet consumed, at most",
        ),
        Spec(
            "model_concurrency",
            _parse_positive_int,
            1,
            True,
            "executes of one model that may run at once",
        ),
        Spec(
            "affinity",
            _parse_affinity,
            "any",
            True,
            "`model`: one dedicated long-lived thread per model",
        ),
        Spec(
            "timeout",
            _parse_seconds,
            None,
            True,
            "seconds for the whole response, queueing included",
        ),
        Spec(
            "first_chunk_timeout",
            _parse_seconds,
            None,
            True,
            "seconds from the start of execution to the first chunk",
        ),
        Spec(
            "idle_timeout",
            _parse_seconds,
            None,
            True,
            "seconds the consumer may wait for each later chunk",
        ),
        Spec(
            "queue_timeout", _parse_seconds, None, True, "seconds a prompt may wait for a free slot"
        ),
        Spec(
            "stall_timeout",
            _parse_seconds,
            None,
            True,
            "seconds a full buffer may wait for its consumer before the stream is closed",
        ),
        Spec(
            "max_threads", _parse_positive_int, 16, False, "worker threads running models, in all"
        ),
        Spec(
            "stuck_warning",
            _parse_seconds,
            30.0,
            False,
            "seconds after a cancel before a still-busy worker is logged",
        ),
        Spec(
            "isolation",
            _parse_isolation,
            "thread",
            True,
            "'process' runs the model in warm worker processes of its own (docs/isolation.md)",
        ),
        Spec(
            "kill_after",
            _parse_seconds,
            5.0,
            True,
            "process isolation: seconds a stopped worker may stay in the model before it is killed",
        ),
        Spec(
            "worker_idle_timeout",
            _parse_seconds,
            300.0,
            True,
            "process isolation: seconds an idle worker process is kept before it exits",
        ),
    )
}


@dataclasses.dataclass(frozen=True)
class Settings:
    """The effective settings of one model, and where each value came from."""

    buffer: int
    model_concurrency: int
    affinity: str
    timeout: float | None
    first_chunk_timeout: float | None
    idle_timeout: float | None
    queue_timeout: float | None
    stall_timeout: float | None
    max_threads: int
    stuck_warning: float | None
    isolation: str = "thread"
    kill_after: float | None = 5.0
    worker_idle_timeout: float | None = 300.0
    sources: Mapping[str, str] = dataclasses.field(default_factory=dict, compare=False)


def settings_path() -> Path:
    """The per-model overrides file, inside llm's user directory."""
    import llm

    return Path(llm.user_dir()) / SETTINGS_FILENAME  # type: ignore[no-untyped-call]


def _file_bytes(path: Path) -> bytes | None:
    """The settings file's content (None when absent): a few hundred bytes, read per prompt.

    Keyed on content rather than on ``stat()``: file timestamps can be coarser than two quick
    rewrites (and inodes are reused), which would serve stale settings.  Most users have no
    such file: ``os.access`` says so without the cost of raising ``FileNotFoundError``.
    """
    if not os.access(path, os.F_OK):
        return None
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


class _FileCache:
    """Parses and validates the settings file again only when its content changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[str, bytes] | None = None
        self._data: dict[str, dict[str, Any]] = {}

    def load(self, path: Path, content: bytes | None) -> dict[str, dict[str, Any]]:
        if content is None:
            return {}
        key = (str(path), content)
        with self._lock:
            if self._key == key:
                return self._data
            data = parse_overrides(content, path)
            self._key, self._data = key, data
            return data


_cache = _FileCache()


def read_overrides(path: Path | None = None) -> dict[str, dict[str, Any]]:
    """Return ``{model_id: {setting: value}}`` from the settings file, validating it."""
    path = path or settings_path()
    content = _file_bytes(path)
    return {} if content is None else parse_overrides(content, path)


def parse_overrides(content: bytes, path: Path) -> dict[str, dict[str, Any]]:
    """Validate the settings file's content; errors name the file, model and setting."""
    try:
        raw = json.loads(content.decode() or "{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SettingError(f"{path} is not valid JSON: {error}") from None
    models = raw.get("models", {}) if isinstance(raw, dict) else None
    if not isinstance(models, dict):
        raise SettingError(f'{path} must hold an object {{"models": {{MODEL_ID: {{...}}}}}}')
    for model_id, values in models.items():
        if not isinstance(values, dict):
            raise SettingError(f"{path}: entry for {model_id!r} must be an object")
        for name, value in values.items():
            parse_value(name, value, where=f"{path} [{model_id}]")
    return models


def write_overrides(models: Mapping[str, Mapping[str, Any]], path: Path | None = None) -> None:
    """Write the overrides atomically, so a concurrent reader never sees half a file."""
    path = path or settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    cleaned = {model_id: dict(values) for model_id, values in models.items() if values}
    tmp.write_text(json.dumps({"models": cleaned}, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def parse_value(name: str, value: Any, *, where: str) -> Any:
    """Validate one setting value; ``where`` names its origin in the error message."""
    spec = SPECS.get(name)
    if spec is None:
        raise SettingError(
            f"{where}: unknown setting {name!r}; known settings: " + ", ".join(sorted(SPECS))
        )
    try:
        return spec.parse(value if value is not None else "none")
    except ValueError as error:
        raise SettingError(f"{where}: {name} must be {error}, got {value!r}") from None


_resolved_lock = threading.Lock()
_resolved: dict[tuple[Any, ...], Settings] = {}

# resolve() runs once per prompt, on the way to its first chunk: what it recomputes every time
# is kept small.  llm.user_dir() depends only on LLM_USER_PATH (else a fixed directory) but
# creates the directory on every call, and each Spec builds its variable name on every read.
_paths: dict[Any, Path] = {}
_env_var_names: dict[tuple[str, ...], tuple[str, ...]] = {}
_encoded_names: dict[tuple[str, ...], tuple[Any, ...]] = {}
_USER_PATH_VAR = ("LLM_USER_PATH",)
_watched_names: dict[tuple[str, ...], tuple[str, ...]] = {}
# Per model id: the raw variable values and file content resolve() last read, and its result.
_last_read: dict[str, tuple[tuple[Any, ...], bytes | None, Settings]] = {}


def _settings_path_now() -> Path:
    """:func:`settings_path`, remembered per value of ``LLM_USER_PATH``."""
    (user_path,) = _env_values(os.environ, _USER_PATH_VAR)
    return _path_for(user_path)


def _path_for(user_path: Any) -> Path:
    """The settings file for one (raw) value of ``LLM_USER_PATH``."""
    path = _paths.get(user_path)
    if path is None:
        if len(_paths) > 64:
            _paths.clear()
        path = _paths[user_path] = settings_path()
    return path


def _env_vars() -> tuple[str, ...]:
    """The ``LLM_ASYNC_*`` variable of every setting, in :data:`SPECS` order."""
    names = tuple(SPECS)
    env_vars = _env_var_names.get(names)
    if env_vars is None:
        env_vars = _env_var_names[names] = tuple(spec.env_var for spec in SPECS.values())
    return env_vars


def _env_values(environ: Mapping[str, str], names: tuple[str, ...]) -> tuple[Any, ...]:
    """The value of each variable in ``names`` (None when unset), to key a memo on.

    ``os.environ.get`` raises and catches a ``KeyError`` inside for every unset variable
    (about 2 µs each, over a dozen per prompt: most of what ``resolve`` cost); the dictionary
    underneath ``os.environ`` answers the same question, in its own key encoding, in a
    fraction of that.  Any other mapping is read through ``get``.
    """
    data = getattr(environ, "_data", None)
    encode = getattr(environ, "encodekey", None)
    if environ is not os.environ or not isinstance(data, dict) or encode is None:
        return tuple(map(environ.get, names))
    encoded = _encoded_names.get(names)
    if encoded is None:
        encoded = _encoded_names[names] = tuple(map(encode, names))
    return tuple(map(data.get, encoded))  # encoded values: fine for a key, not for parsing


def _watched_vars() -> tuple[str, ...]:
    """``LLM_USER_PATH``, then the ``LLM_ASYNC_*`` variable of every setting."""
    names = tuple(SPECS)
    watched = _watched_names.get(names)
    if watched is None:
        watched = _watched_names[names] = (*_USER_PATH_VAR, *_env_vars())
    return watched


def resolve(model_id: str, environ: Mapping[str, str] | None = None) -> Settings:
    """Effective settings of ``model_id``: environment over the file over defaults.

    Reads the variables and the file on every call (a change applies to the next prompt),
    and is memoised on what it read: from ``os.environ`` (every prompt's case) by comparing
    what was read with what was read last time for the same model, which skips building and
    hashing a memo key on the way to every first chunk.
    """
    if environ is None or environ is os.environ:
        watched = _env_values(os.environ, _watched_vars())
        path = _path_for(watched[0])
        content = _file_bytes(path)
        last = _last_read.get(model_id)
        if last is not None and last[1] == content and last[0] == watched:
            return last[2]
        settings = _memoised(model_id, os.environ, path, content, watched[1:])
        if len(_last_read) > 256:
            _last_read.clear()
        _last_read[model_id] = (watched, content, settings)
        return settings
    path = _settings_path_now()
    content = _file_bytes(path)
    return _memoised(model_id, environ, path, content, _env_values(environ, _env_vars()))


def _memoised(
    model_id: str,
    environ: Mapping[str, str],
    path: Path,
    content: bytes | None,
    env_values: tuple[Any, ...],
) -> Settings:
    key = (model_id, str(path), content, env_values)
    with _resolved_lock:
        cached = _resolved.get(key)
    if cached is not None:
        return cached
    settings = _resolve(model_id, environ, path, content)
    with _resolved_lock:
        if len(_resolved) > 256:
            _resolved.clear()
        _resolved[key] = settings
    return settings


def _resolve(
    model_id: str, environ: Mapping[str, str], path: Path, content: bytes | None
) -> Settings:
    overrides = _cache.load(path, content).get(model_id, {})
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, spec in SPECS.items():
        if spec.env_var in environ:
            values[name] = parse_value(name, environ[spec.env_var], where=spec.env_var)
            sources[name] = "env"
        elif spec.per_model and name in overrides:
            values[name] = parse_value(
                name, overrides[name], where=f"{SETTINGS_FILENAME} [{model_id}]"
            )
            sources[name] = "file"
        else:
            values[name] = spec.default
            sources[name] = "default"
    return Settings(**values, sources=sources)


def excluded_patterns(environ: Mapping[str, str] | None = None) -> list[str]:
    """The shell-glob patterns of ``LLM_ASYNC_EXCLUDE``."""
    environ = os.environ if environ is None else environ
    raw = environ.get(ENV_PREFIX + "EXCLUDE", "")
    return [p.strip() for p in raw.split(",") if p.strip()]


def is_excluded(names: Iterable[str], patterns: Iterable[str]) -> bool:
    """True when any of a model's id or aliases matches any pattern (case-insensitive)."""
    names = [n.lower() for n in names]
    return any(fnmatch.fnmatchcase(n, p.lower()) for p in patterns for n in names)


EXCLUDE_HELP = "comma-separated model ids or aliases, shell globs allowed, that get no twin"
