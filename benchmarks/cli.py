"""The ``python -m benchmarks`` command line: options, the run, and writing the results."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from . import families as registry
from . import plots, report, targets
from .runner import Runner
from .spec import PROFILES, Config


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure what the thread bridge costs and saves, side by side with the "
        "0.1 adapter and a native async model. Writes results.json, results.md "
        "and PNG plots.",
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        action="store_const",
        const="quick",
        dest="profile",
        help="fewer repeats and sizes (about 4½ minutes on 2 cores)",
    )
    size.add_argument(
        "--profile",
        choices=PROFILES,
        default="full",
        help="full (default, about 18 minutes on 2 cores), quick, or tiny (smoke test only)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Config.out,
        help="directory for the results (default: benchmarks/results)",
    )
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="FAMILY",
        help="run only these families (repeatable or comma-separated): "
        + ", ".join(registry.BY_NAME),
    )
    p.add_argument("--repeats", type=int, help="repeats of every measurement (overrides profile)")
    p.add_argument("--warmup", type=int, default=1, help="discarded warm-up rounds (default 1)")
    p.add_argument(
        "--no-v01",
        dest="v01",
        action="store_false",
        help="skip the 0.1 release (no virtual environment is created)",
    )
    p.add_argument(
        "--v01-venv",
        type=Path,
        help="virtual environment for the 0.1 release "
        "(default: .cache/bench-0.1-venv, created on demand)",
    )
    p.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNG plots")
    p.add_argument(
        "--timeout",
        type=float,
        default=180.0,
        help="seconds one measurement may take before its worker is killed",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


def config(args: argparse.Namespace) -> Config:
    only = tuple(name.strip() for item in args.only for name in item.split(",") if name.strip())
    return Config(
        profile=args.profile or "full",
        out=args.out,
        families=only,
        repeats=args.repeats,
        warmup=args.warmup,
        v01=args.v01,
        v01_venv=args.v01_venv,
        plots=args.plots,
        timeout=args.timeout,
        quiet=args.quiet,
    )


def run(cfg: Config, command: str = "python -m benchmarks") -> dict[str, Any]:
    """Run the benchmarks of ``cfg`` and write every output; returns the report."""
    cfg.out.mkdir(parents=True, exist_ok=True)
    result = Runner(cfg).run()
    result["command"] = command
    result["targets"] = targets.evaluate(result["families"])
    if cfg.plots:
        written, skipped = plots.write(result["families"], cfg.out)
        result["plots"] = written
        result["plots_skipped"] = skipped
    report.write_json(result, cfg.out)
    report.write_markdown(result, cfg.out)
    return result


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg = config(parser().parse_args(argv))
    command = "python -m benchmarks" + ("" if not argv else " " + shlex.join(argv))
    result = run(cfg, command)
    if not cfg.quiet:
        for target in result["targets"]:
            print(f"{target['verdict']:>12}  {target['target']}: {target['value']}")
        print(f"results: {cfg.out / report.MARKDOWN_NAME} ({result['meta']['duration_s']} s)")
        if result.get("plots_skipped"):
            print(f"plots skipped: {result['plots_skipped']}")
    return 0
