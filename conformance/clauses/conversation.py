"""Conversation clauses: later turns see a sync view of history, or are rejected as when sync."""

from __future__ import annotations

from typing import Any

import pytest

from .. import features, subject
from ..context import Context
from ..instrument import Plan
from ..marks import clause
from .streaming import text_of


def _history_problems(
    conversation: Any, turn: int, async_id: str, prompts: tuple[str, ...], texts: list[str]
) -> list[str]:
    import llm

    where = f"turn {turn + 1}"
    if conversation is None:
        return [f"{where}: execute() received conversation=None"]
    if isinstance(conversation, llm.AsyncConversation) or not isinstance(
        conversation, llm.Conversation
    ):
        return [
            f"{where}: execute() received a {type(conversation).__name__}, not a sync "
            "llm.Conversation: in sync code conversation.responses[i].text() is a coroutine"
        ]
    problems = []
    if conversation.id != async_id:
        problems.append(f"{where}: conversation.id {conversation.id!r} != {async_id!r}")
    earlier = list(conversation.responses)
    if len(earlier) != turn:
        problems.append(f"{where}: {len(earlier)} earlier response(s), expected {turn}")
    for index, response in enumerate(earlier[:turn]):
        try:
            text = response.text()
        except Exception as error:
            problems.append(f"{where}: responses[{index}].text() raised {error!r}")
            continue
        if not isinstance(text, str):
            problems.append(
                f"{where}: responses[{index}].text() returned {type(text).__name__}, not str"
            )
        elif text != texts[index]:
            problems.append(f"{where}: responses[{index}].text() is {text!r}, not {texts[index]!r}")
        if getattr(response.prompt, "prompt", None) != prompts[index]:
            problems.append(f"{where}: responses[{index}].prompt.prompt is not the earlier prompt")
    return problems


class ConversationClauses:
    """conversation.*: multi-turn use of the twin."""

    @clause("conversation.turns")
    def test_conversation_turns(self, llm_conformance: Context) -> None:
        ctx = llm_conformance
        ctx.require("supports_conversation")
        prompts = ctx.samples.turns()
        twin = ctx.twin()
        ctx.use(Plan())

        async def main() -> tuple[str, list[Any]]:
            conversation = twin.conversation()
            results = []
            for prompt in prompts:
                results.append(
                    await subject.run_async(
                        conversation, ctx.bench.reseed, prompt, **ctx.prompt_kwargs()
                    )
                )
            return conversation.id, results

        async_id, results = ctx.loop(main)
        texts = [result.text or "" for result in results]
        records = ctx.instrument.records
        problems = []
        for turn in (1, 2):
            if turn < len(records):
                problems += _history_problems(
                    records[turn].args.get("conversation"), turn, async_id, prompts, texts
                )
        assert not problems, "; ".join(problems)
        for turn, result in enumerate(results):
            assert result.error is None, (
                f"turn {turn + 1} failed: {type(result.error).__name__}: {result.error}"
            )
        records = ctx.records(3)
        for turn, record in enumerate(records[:3]):
            yielded = "".join(t for t in (text_of(c.value) for c in record.chunks) if t is not None)
            assert texts[turn] == yielded, (
                f"turn {turn + 1} answered {texts[turn]!r} but execute() yielded {yielded!r}"
            )
        ctx.note("turns 2 and 3 saw a sync Conversation with str texts")

    @clause("conversation.rejected")
    def test_conversation_rejected(self, llm_conformance: Context) -> None:
        ctx = llm_conformance
        error_class = features.conversation_not_supported()
        if error_class is None or not features.has_supports_conversation():
            pytest.skip(features.missing("supports_conversation", "0.36"))
        if ctx.caps.values.get("supports_conversation", True):
            pytest.skip(
                "the model declares supports_conversation=True (conversation.turns checks "
                "it); set supports_conversation = False on the test class to check rejection"
            )
        prompts = ctx.samples.turns()
        ctx.use(Plan())
        sync_conversation = ctx.sync().conversation()
        first = subject.run_sync(
            sync_conversation, ctx.bench.reseed, prompts[0], **ctx.prompt_kwargs()
        )
        assert first.error is None, f"the sync model's first turn failed: {first.error!r}"
        try:
            sync_conversation.prompt(prompts[1], **ctx.prompt_kwargs())
            expected: BaseException | None = None
        except Exception as error:
            expected = error
        twin = ctx.twin()

        async def main() -> BaseException | None:
            conversation = twin.conversation()
            await (conversation.prompt(prompts[0], **ctx.prompt_kwargs())).text()
            try:
                await conversation.prompt(prompts[1], **ctx.prompt_kwargs()).text()
            except Exception as error:
                return error
            return None

        ctx.use(Plan())
        actual = ctx.loop(main)
        assert expected is not None, "the sync model accepts a second turn; check the capability"
        assert actual is not None, (
            f"the sync model rejects a second turn ({type(expected).__name__}: {expected}), "
            "the twin accepts it"
        )
        assert type(actual) is type(expected) and str(actual) == str(expected), (
            f"second turn: sync raises {type(expected).__name__}: {expected}; twin raises "
            f"{type(actual).__name__}: {actual}"
        )
        assert len(ctx.instrument.records) == 1, "execute() ran for the rejected turn"
