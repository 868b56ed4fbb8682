"""Experiment: llm-gpt4all 0.4 fails when its generator is closed early, on llm's sync path.

No adapter is involved. Any consumer that stops reading a reply (a cancel, a timeout, a
``break``) closes the model's generator; llm-gpt4all's ``SuppressOutput.__exit__`` then runs.
Run it where llm-gpt4all, gpt4all 2.8.2 and a model are installed, for instance with the
matrix fixture's GGUF (``python -m matrix.fixtures gpt4all-smollm2 --user-dir U --work-dir W``
prints the environment to use):

    env $(python -m matrix.fixtures gpt4all-smollm2 --user-dir /tmp/u --work-dir /tmp/w) \\
        python docs/gpt4all/early_close.py /tmp/early-close.log

It prompts four times, takes the first chunk, closes the generator, and writes to the log file
(fds 1 and 2 are what it watches, so it does not print) whether the close raised and where
fds 1 and 2 and ``sys.stdout`` point afterwards. docs/choosing-isolation.md records the output.
"""

from __future__ import annotations

import os
import sys

import llm

MODEL_ID = "SmolLM2-135M-Instruct-Q4_1"
ATTEMPTS = 4


def target(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError as error:
        return f"closed ({error.strerror})"


def main(log_path: str) -> None:
    model = llm.get_model(MODEL_ID)
    with open(log_path, "w", buffering=1) as log:
        log.write(f"before: fd 1 -> {target(1)}, fd 2 -> {target(2)}\n")
        for attempt in range(1, ATTEMPTS + 1):
            options = model.Options(max_tokens=8, temp=0.0)
            prompt = llm.Prompt("Say hello", model=model, options=options)
            response = llm.Response(prompt, model, stream=True)
            generator = model.execute(prompt, True, response, None)
            first = next(generator)
            try:
                generator.close()
                outcome = "closed cleanly"
            except OSError as error:
                outcome = f"close raised {error!r}"
            log.write(
                f"{attempt}: first chunk {first!r}, {outcome}; fd 1 -> {target(1)}, "
                f"fd 2 -> {target(2)}, sys.stdout {sys.stdout!r}\n"
            )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "early-close.log")
