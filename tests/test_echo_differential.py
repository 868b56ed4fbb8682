"""Differential test against the real llm-echo plugin: its sync ``Echo`` through the adapter
must behave exactly like its native ``EchoAsync`` for the same prompts."""

from __future__ import annotations

import json
import re

import pytest

from llm_all_models_async.twins import make_twin

pytestmark = pytest.mark.usefixtures("no_leaked_workers")

echo_module = pytest.importorskip(
    "llm_echo", reason="llm-echo is not installed; pip install 'llm-all-models-async[test]'"
)

PROMPTS = [
    ("hello world", {}),
    ("", {}),
    ("with options", {"example_bool": True}),
    (
        json.dumps(
            {"prompt": "call tools", "tool_calls": [{"name": "lookup", "arguments": {"q": 1}}]}
        ),
        {},
    ),
    (json.dumps({"raw": "raw text back"}), {}),
    ("thinking", {"thinking": True}),
]


def _pair():
    sync_model = echo_module.Echo()
    return make_twin(sync_model), echo_module.EchoAsync()


def _supports(options: dict) -> bool:
    return set(options) <= set(echo_module.Echo.Options.model_fields)


async def _observe(model, prompt: str, options: dict, stream: bool) -> dict:
    response = model.prompt(prompt, stream=stream, system="be brief", **options)
    chunks = [chunk async for chunk in response]
    usage = await response.usage()
    result = {
        "text": await response.text(),
        "chunks": chunks,
        "usage": (usage.input, usage.output, usage.details),
        "tool_calls": [(c.name, c.arguments) for c in await response.tool_calls()],
        "json": await response.json(),
    }
    if hasattr(response, "astream_events"):
        result["events"] = [
            (e.type, e.chunk, e.part_index) async for e in response.astream_events()
        ]
    return result


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize(("prompt", "options"), PROMPTS)
async def test_twin_of_echo_matches_native_echo_async(prompt, options, stream):
    if not _supports(options):
        pytest.skip(f"this llm-echo version has no options {sorted(options)}")
    twin, native = _pair()
    assert await _observe(twin, prompt, options, stream) == await _observe(
        native, prompt, options, stream
    )


async def test_conversation_history_matches_native_echo_async():
    twin, native = _pair()
    outputs = []
    for model in (twin, native):
        conversation = model.conversation()
        texts = []
        for turn in ("first", "second", "third"):
            texts.append(await conversation.prompt(turn).text())
        outputs.append(texts)
    assert outputs[0] == outputs[1]
    assert '"prompt": "second"' in outputs[0][2] or "second" in outputs[0][2]


async def test_chain_with_a_tool_matches_native_echo_async():
    def lookup(q: int) -> str:
        """Look something up."""
        return f"found {q}"

    prompt = json.dumps({"prompt": "go", "tool_calls": [{"name": "lookup", "arguments": {"q": 7}}]})
    twin, native = _pair()
    texts = [await model.chain(prompt, tools=[lookup]).text() for model in (twin, native)]
    # Tool call ids are generated per call: compare everything else.
    texts = [re.sub(r'"tool_call_id": "[^"]*"', '"tool_call_id": ID', t) for t in texts]
    assert texts[0] == texts[1]
    assert "found 7" in texts[0]
