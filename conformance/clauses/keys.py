"""Key clauses: explicit, environment and stored keys reach execute(); a missing key fails alike."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ..context import Context
from ..instrument import Plan
from ..marks import clause

EXPLICIT = "conformance-explicit-key"
FROM_ENV = "conformance-env-key"
STORED = "conformance-stored-key"


def _require_key_model(ctx: Context) -> None:
    import llm

    ctx.require("needs_key")
    if not isinstance(ctx.sync(), llm.KeyModel):
        pytest.skip(
            "the model sets needs_key but is not an llm.KeyModel: it resolves its key inside "
            "execute() itself, so llm passes it no key to check"
        )


def _clear_keys(ctx: Context) -> None:
    env_var = ctx.caps.values.get("key_env_var")
    if env_var:
        ctx.monkeypatch.delenv(env_var, raising=False)
    keys = ctx.bench.place.user_dir / "keys.json" if ctx.bench.place else None
    if keys is not None and keys.exists():
        stored = keys.read_bytes()  # the user's keys copied into the run: back after the clause
        keys.unlink()
        ctx.request.addfinalizer(lambda: keys.write_bytes(stored))


def _key_seen(ctx: Context, **prompt_kwargs: Any) -> Any:
    ctx.use(Plan(synthetic=("ok",)))
    result = ctx.twin_run(**prompt_kwargs)
    assert result.error is None, f"the twin failed: {type(result.error).__name__}: {result.error}"
    return ctx.records(1)[0].args.get("key")


class KeyClauses:
    """keys.*: llm's key resolution through the twin (llm.KeyModel models)."""

    @clause("keys.explicit")
    def test_keys_explicit(self, llm_conformance: Context) -> None:
        ctx = llm_conformance
        _require_key_model(ctx)
        _clear_keys(ctx)
        seen = _key_seen(ctx, key=EXPLICIT)
        assert seen == EXPLICIT, f"execute() received key {seen!r}, expected {EXPLICIT!r}"

    @clause("keys.env")
    def test_keys_env(self, llm_conformance: Context) -> None:
        ctx = llm_conformance
        _require_key_model(ctx)
        ctx.require("key_env_var")
        _clear_keys(ctx)
        ctx.monkeypatch.setenv(ctx.caps.key_env_var, FROM_ENV)
        seen = _key_seen(ctx)
        assert seen == FROM_ENV, (
            f"execute() received key {seen!r}, expected {FROM_ENV!r} from ${ctx.caps.key_env_var}"
        )

    @clause("keys.stored")
    def test_keys_stored(self, llm_conformance: Context) -> None:
        ctx = llm_conformance
        _require_key_model(ctx)
        _clear_keys(ctx)
        assert ctx.bench.place is not None
        path = ctx.bench.place.user_dir / "keys.json"
        path.write_text(json.dumps({ctx.caps.needs_key: STORED}))
        try:
            seen = _key_seen(ctx)
        finally:
            path.unlink()
        assert seen == STORED, f"execute() received key {seen!r}, expected {STORED!r} from {path}"

    @clause("keys.missing")
    def test_keys_missing(self, llm_conformance: Context) -> None:
        ctx = llm_conformance
        _require_key_model(ctx)
        _clear_keys(ctx)
        ctx.use(Plan(synthetic=("ok",)))
        expected = ctx.sync_run().error
        ctx.use(Plan(synthetic=("ok",)))
        actual = ctx.twin_run().error
        assert expected is not None, "the sync model runs without any key; check needs_key"
        assert actual is not None, (
            f"without a key the sync model raises {type(expected).__name__}: {expected}, but "
            "the twin runs"
        )
        assert type(actual) is type(expected) and str(actual) == str(expected), (
            f"without a key: sync raises {type(expected).__name__}: {expected}; twin raises "
            f"{type(actual).__name__}: {actual}"
        )
        assert not ctx.instrument.records, "execute() ran without a key"
        ctx.note(f"{type(actual).__name__}: {actual}")
