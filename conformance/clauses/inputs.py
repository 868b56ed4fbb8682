"""Input clauses: a tool chain, a schema prompt and an attachment, when the model supports them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .. import subject
from ..context import Context
from ..instrument import Plan
from ..marks import clause


def _without_ids(text: str | None, calls: list[Any]) -> str | None:
    """llm invents tool_call ids (random ULIDs) where a model gives none: mask them."""
    for index, call in enumerate(calls):
        if text is not None and call[3]:
            text = text.replace(str(call[3]), f"<tool_call_id {index}>")
    return text


def _maybe_json(text: str | None) -> Any:
    try:
        return json.loads(text or "")
    except ValueError:
        return None


class InputClauses:
    """tools.chain, schema.prompt, attachments.prompt."""

    @clause("tools.chain")
    def test_tools_chain(self, llm_conformance: Context) -> None:
        ctx = llm_conformance
        ctx.require("supports_tools")
        tools, prompt = ctx.samples.the_tools(), ctx.samples.tool_prompt
        sync_calls: list[Any] = []
        twin_calls: list[Any] = []

        def recorder(into: list[Any]) -> Any:
            def after_call(tool_: Any, call: Any, result: Any) -> None:
                into.append(
                    (call.name, call.arguments, result.output, getattr(call, "tool_call_id", None))
                )

            return after_call

        ctx.use(Plan())
        ctx.bench.reseed()
        try:
            sync_text = (
                ctx.sync()
                .chain(prompt, tools=tools, after_call=recorder(sync_calls), **ctx.chain_kwargs())
                .text()
            )
            sync_error: Exception | None = None
        except Exception as error:
            sync_text, sync_error = None, error
        if not sync_calls and sync_error is None:
            pytest.skip(
                f"the sync model made no tool call for tool_prompt {prompt!r}; set tool_prompt "
                "(and tool) on the test class so that the model calls the tool"
            )
        twin = ctx.twin()

        async def main() -> str:
            ctx.bench.reseed()
            chain = twin.chain(
                prompt, tools=tools, after_call=recorder(twin_calls), **ctx.chain_kwargs()
            )
            return await chain.text()

        try:
            twin_text = ctx.loop(main)
            twin_error: Exception | None = None
        except Exception as error:
            twin_text, twin_error = None, error
        if sync_error is not None:
            assert type(twin_error) is type(sync_error) and str(twin_error) == str(sync_error), (
                f"the sync chain fails with {type(sync_error).__name__}: {sync_error}; the "
                f"twin's gives {type(twin_error).__name__}: {twin_error}"
            )
            ctx.note(f"both chains fail alike: {type(sync_error).__name__}: {sync_error}")
            return
        assert twin_error is None, (
            f"the twin's chain fails: {type(twin_error).__name__}: {twin_error}"
        )
        assert twin_calls, f"the sync model called the tool ({sync_calls!r}), the twin did not"
        if ctx.deterministic():
            assert [c[:3] for c in twin_calls] == [c[:3] for c in sync_calls], (
                f"tool calls differ: sync {sync_calls!r}, twin {twin_calls!r}"
            )
            sync_text = _without_ids(sync_text, sync_calls)
            twin_text = _without_ids(twin_text, twin_calls)
            assert twin_text == sync_text, (
                f"final text differs: sync {sync_text!r}, twin {twin_text!r}"
            )
        else:
            assert [c[0] for c in twin_calls] == [c[0] for c in sync_calls], (
                f"tools called differ: sync {sync_calls!r}, twin {twin_calls!r}"
            )
        ctx.note(f"{len(twin_calls)} tool call(s): {[c[:3] for c in twin_calls]!r}")

    @clause("schema.prompt")
    def test_schema_prompt(self, llm_conformance: Context) -> None:
        ctx = llm_conformance
        ctx.require("supports_schema")
        schema = ctx.samples.the_schema()
        prompt = ctx.samples.schema_prompt
        ctx.use(Plan())
        expected = ctx.reference(prompt, schema=schema)
        ctx.use(Plan())
        actual = ctx.twin_run(prompt, schema=schema)
        assert actual.error is None, f"{type(actual.error).__name__}: {actual.error}"
        received = ctx.records(1)[0].args["prompt"].schema
        assert received == schema, f"execute() received schema {received!r}, not {schema!r}"
        if ctx.deterministic():
            assert actual.text == expected.text, (
                f"schema output differs: sync {expected.text!r}, twin {actual.text!r}"
            )
        elif _maybe_json(expected.text) is not None:
            assert _maybe_json(actual.text) is not None, (
                f"the sync model returns JSON for the schema, the twin returns {actual.text!r}"
            )

    @clause("attachments.prompt")
    def test_attachments_prompt(self, llm_conformance: Context) -> None:
        ctx = llm_conformance
        ctx.require("attachment_types")
        attachment = ctx.samples.the_attachment(ctx.caps.attachment_types)
        if attachment is None:
            pytest.skip(
                f"no sample attachment for types {sorted(ctx.caps.attachment_types)}; set "
                "attachment = {'type': ..., 'path': ...} on the test class to run it"
            )
        prompt = ctx.samples.attachment_prompt
        ctx.use(Plan())
        expected = subject.run_sync(
            ctx.sync(), ctx.bench.reseed, prompt, attachments=[attachment], **ctx.prompt_kwargs()
        )
        assert expected.error is None, f"the sync model failed: {expected.error!r}"
        ctx.use(Plan())
        actual = ctx.loop(
            lambda: subject.run_async(
                ctx.twin(),
                ctx.bench.reseed,
                prompt,
                attachments=[attachment],
                **ctx.prompt_kwargs(),
            )
        )
        assert actual.error is None, f"{type(actual.error).__name__}: {actual.error}"
        received = ctx.records(1)[0].args["prompt"].attachments
        assert len(received) == 1 and received[0].content_bytes() == attachment.content_bytes(), (
            "execute() did not receive the attachment's content"
        )
        if ctx.deterministic():
            assert actual.text == expected.text, (
                f"output differs: sync {expected.text!r}, twin {actual.text!r}"
            )
