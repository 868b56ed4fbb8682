"""Instructions per prompt and per chunk, counted by valgrind's callgrind: a load-proof measure.

    python -m benchmarks.instructions             # adapter, native and 0.1; about 3 minutes

Wall-clock figures swing with whatever else a shared machine runs; an instruction count does
not (the same binary, inputs and environment give the same total).  Each figure is the
difference between two runs of the same contender that differ only in the number of prompts
(or chunks), divided by that difference, so interpreter start-up and imports cancel out.
What it cannot see is the cost of threads waiting for each other (wake-ups, GIL hand-overs,
cache traffic between cores): that is what the wall-clock families measure.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import venv01
from .contenders import REPO_ROOT
from .stats import DASH, TIMES

CONTENDERS = ("adapter", "native", "v0.1")
# (what, small count, large count): prompts of 8 chunks, or one prompt of one-character chunks
MEASURES = {"prompt": (100, 400), "chunk": (2_000, 12_000)}
COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def _child(contender: str, measure: str, count: int) -> None:
    """Run ``count`` prompts (or chunks) through ``contender`` in this process."""
    from . import contenders

    contenders.prepare(contenders.kind_of(contender))
    model = contenders.model_for(contender)

    async def main() -> None:
        if measure == "chunk":
            async for _chunk in model.prompt("bench", chunks=count):
                pass
            return
        for _ in range(count):
            async for _chunk in model.prompt("bench", chunks=8):
                pass

    asyncio.run(main())


def _count(python: Path, contender: str, measure: str, count: int) -> int:
    """Instructions of one child run under callgrind."""
    with tempfile.TemporaryDirectory(prefix="bench-callgrind-") as scratch:
        done = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={scratch}/out",
                str(python),
                "-m",
                "benchmarks.instructions",
                "--child",
                contender,
                measure,
                str(count),
            ],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
    found = COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"{contender} {measure} x{count} failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions", description=__doc__)
    parser.add_argument("--child", nargs=3, metavar=("CONTENDER", "MEASURE", "COUNT"))
    parser.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    args = parser.parse_args(argv)
    if args.child:
        contender, measure, count = args.child
        _child(contender, measure, int(count))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    rows = []
    for contender in args.contenders:
        python = Path(sys.executable)
        if contender == "v0.1":
            python = venv01.ensure(None, Path(tempfile.gettempdir()) / "bench-0.1-pip.log")
        per = {}
        for measure, (small, large) in MEASURES.items():
            low = _count(python, contender, measure, small)
            high = _count(python, contender, measure, large)
            per[measure] = (high - low) / (large - small)
        rows.append((contender, per))
    native = dict(rows).get("native")
    print("| contender | instructions per prompt (8 chunks) | per chunk | per chunk vs native |")
    print("|---|---:|---:|---:|")
    for contender, per in rows:
        ratio = f"{per['chunk'] / native['chunk']:.2f}{TIMES}" if native else DASH
        print(f"| {contender} | {per['prompt']:,.0f} | {per['chunk']:,.0f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
