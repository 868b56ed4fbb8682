"""Hook clauses: the twin exists, mirrors the sync model, leaves native async models alone."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from .. import adapter, features, subject
from ..context import NOTE_KEY, Bench, Context
from ..marks import clause

SUBPROCESS_BOUND = 120.0


def _public_declared(cls: type, stop_at_llm: bool) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is object:
            continue
        if stop_at_llm and klass.__module__.split(".")[0] == "llm":
            continue
        for name, value in vars(klass).items():
            if name.startswith("_"):
                continue
            if callable(value) and not isinstance(value, type):
                continue
            if isinstance(value, (staticmethod, classmethod)):
                continue
            names.add(name)
    return names


def mirrored_attribute_names(sync_model: Any) -> list[str]:
    """llm's declared model attributes plus every public data attribute of the plugin's model."""
    from llm.models import _BaseModel

    names = _public_declared(_BaseModel, stop_at_llm=False)
    names |= _public_declared(type(sync_model), stop_at_llm=True)
    names |= {n for n in vars(sync_model) if not n.startswith("_")}
    return sorted(names)


def _get(model: Any, name: str) -> Any:
    try:
        return getattr(model, name)
    except Exception as error:
        return ("<raised>", type(error).__name__)


class HookClauses:
    """hook.*: what llm's model lookup returns for the model."""

    @clause("hook.version_gate")
    def test_hook_version_gate(
        self, llm_conformance_bench: Bench, request: pytest.FixtureRequest
    ) -> None:
        bench = llm_conformance_bench

        def bench_note(text: str) -> None:
            request.node.user_properties.append((NOTE_KEY, text))

        found = adapter.info()
        if found.import_error:
            pytest.fail(f"the adapter cannot be imported: {found.import_error}")
        if features.hook_has_model_aliases():
            assert found.active, (
                f"llm {features.llm_version()} offers model_aliases but the adapter reports "
                f"ACTIVE=False ({found.inactive_reason})"
            )
            assert found.inactive_reason is None, found.inactive_reason
            bench_note(f"adapter active on llm {features.llm_version()}")
            return
        # llm < 0.30: llm must keep working, with the adapter inactive.
        assert not found.active, (
            f"llm {features.llm_version()} has no model_aliases, yet the adapter says ACTIVE"
        )
        assert found.inactive_reason, "the adapter is inactive but gives no INACTIVE_REASON"
        for args in (["--version"], ["models"]):
            done = subprocess.run(
                [sys.executable, "-m", "llm", *args],
                capture_output=True,
                text=True,
                timeout=SUBPROCESS_BOUND,
                check=False,
            )
            assert done.returncode == 0, (
                f"`llm {' '.join(args)}` fails with the adapter installed on llm "
                f"{features.llm_version()}: exit {done.returncode}\n{done.stderr[-2000:]}"
            )
            if args == ["models"] and bench.model_id:
                assert bench.model_id in done.stdout, (
                    f"`llm models` does not list {bench.model_id!r}:\n{done.stdout[-2000:]}"
                )
        import llm

        if bench.model_id:
            with pytest.raises(llm.UnknownModelError):
                llm.get_async_model(bench.model_id)
        bench_note(f"`llm --version` and `llm models` work; {found.inactive_reason}")

    @clause("hook.twin")
    def test_hook_twin(self, llm_conformance: Context) -> None:
        ctx = llm_conformance
        models = ctx.models
        if models.native is not None:
            pytest.skip(
                f"the plugin registers a native async model ({type(models.native).__name__}) "
                "that the adapter must not replace: hook.native_untouched checks it; the "
                "other clauses test a twin built for the sync model"
            )
        found = models.registered_async
        assert found is not None, (
            f"llm.get_async_model({models.model_id!r}) finds no async model: the adapter did "
            "not register a twin (is it installed, active, and not excluded by "
            "LLM_ASYNC_EXCLUDE?)"
        )
        assert ctx.is_twin(found), (
            f"the async model for {models.model_id!r} is {type(found).__module__}."
            f"{type(found).__qualname__}, not this adapter's twin: another plugin supplied it"
        )
        wrapped = getattr(found, "sync_model", None)
        assert wrapped is not None and wrapped.model_id == models.model_id, (
            f"twin.sync_model is {wrapped!r}, expected the sync model {models.model_id!r}"
        )

    @clause("hook.identity")
    def test_hook_identity(self, llm_conformance: Context) -> None:
        import llm

        ctx = llm_conformance
        twin, sync = ctx.twin(), ctx.sync()
        problems = []
        if twin.model_id != sync.model_id:
            problems.append(f"model_id {twin.model_id!r} != {sync.model_id!r}")
        if str(twin) != str(sync):
            problems.append(f"str() {str(twin)!r} != {str(sync)!r}")
        if ctx.models.native is None:
            for alias in ctx.models.aliases:
                try:
                    by_alias = llm.get_async_model(alias)
                except llm.UnknownModelError as error:
                    problems.append(f"alias {alias!r}: {error}")
                    continue
                if by_alias.model_id != sync.model_id:
                    problems.append(
                        f"alias {alias!r} resolves to async model {by_alias.model_id!r}"
                    )
        assert not problems, "the twin's identity differs from the sync model's: " + "; ".join(
            problems
        )
        ctx.note(f"model_id, str() and {len(ctx.models.aliases)} alias(es) match")

    @clause("hook.attributes")
    def test_hook_attributes(self, llm_conformance: Context) -> None:
        ctx = llm_conformance
        twin = ctx.twin()
        sync = getattr(twin, "sync_model", None) or ctx.sync()
        names = mirrored_attribute_names(sync)
        problems = []
        for name in names:
            expected = _get(sync, name)
            actual = _get(twin, name)
            if isinstance(expected, type) or isinstance(actual, type):
                same = expected is actual
            else:
                try:
                    same = bool(expected == actual)
                except Exception:
                    same = expected is actual
            if not same:
                problems.append(f"{name}: sync {expected!r}, twin {actual!r}")
        assert not problems, (
            f"{len(problems)} attribute(s) of the twin differ from the sync model's: "
            + "; ".join(problems)
        )
        ctx.note(f"{len(names)} attributes match: {', '.join(names)}")

    @clause("hook.native_untouched")
    def test_hook_native_untouched(self, llm_conformance: Context) -> None:
        import llm

        ctx = llm_conformance
        natives = [(e, n) for e, n in subject.registrations() if n is not None]
        if not natives:
            pytest.skip("no installed plugin registers a native async model to check")
        problems = []
        for entry, native in natives:
            if entry.async_model is not native or ctx.is_twin(entry.async_model):
                problems.append(
                    f"{entry.model.model_id}: native {type(native).__name__} replaced by "
                    f"{type(entry.async_model).__name__}"
                )
        if ctx.models.native is not None:
            found = llm.get_async_model(ctx.model_id)
            if type(found) is not type(ctx.models.native):
                problems.append(
                    f"get_async_model({ctx.model_id!r}) is {type(found).__name__}, not the "
                    f"plugin's {type(ctx.models.native).__name__}"
                )
        assert not problems, "native async models were replaced: " + "; ".join(problems)
        ctx.note(f"{len(natives)} native async model(s) untouched")
