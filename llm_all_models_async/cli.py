"""The ``llm async`` commands: see which models have twins, manage per-model settings, check one."""

from __future__ import annotations

import json
from typing import Any

import click
import llm

from . import settings
from .errors import SettingError
from .plugin import ACTIVE, INACTIVE_REASON
from .twins import is_twin


@click.group(name="async")
def async_group() -> None:
    """Async twins of sync-only models (llm-all-models-async)."""


def _status(entry: Any, patterns: list[str]) -> str:
    if entry.async_model is None:
        if (
            entry.model is not None
            and patterns
            and settings.is_excluded([str(entry.model.model_id), *entry.aliases], patterns)
        ):
            return "excluded"
        return "sync only" if entry.model is not None else "none"
    if is_twin(entry.async_model):
        return "twin"
    return "native async"


@async_group.command(name="models")
@click.option("json_", "--json", is_flag=True, help="Output as JSON")
def models_command(json_: bool) -> None:
    """List models: which have twins, which are excluded or already native, and settings."""
    if not ACTIVE:
        raise click.ClickException(INACTIVE_REASON or "inactive")
    patterns = settings.excluded_patterns()
    rows = []
    for entry in llm.get_models_with_aliases():
        model = entry.model or entry.async_model
        status = _status(entry, patterns)
        row: dict[str, Any] = {
            "model_id": model.model_id,
            "aliases": sorted(entry.aliases),
            "status": status,
        }
        if status == "twin":
            try:
                effective = settings.resolve(str(model.model_id))
            except SettingError as error:
                row["error"] = str(error)
            else:
                row["settings"] = {
                    name: {"value": getattr(effective, name), "source": effective.sources[name]}
                    for name in settings.SPECS
                }
        rows.append(row)
    if json_:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        aliases = f" (aliases: {', '.join(row['aliases'])})" if row["aliases"] else ""
        click.echo(f"{row['model_id']}: {row['status']}{aliases}")
        if "error" in row:
            click.echo(f"  error: {row['error']}")
        for name, value in row.get("settings", {}).items():
            shown = "none" if value["value"] is None else value["value"]
            click.echo(f"  {name}={shown} ({value['source']})")


def _model_id(name: str) -> str:
    try:
        return str(llm.get_model(name).model_id)
    except llm.UnknownModelError:
        raise click.ClickException(
            f"Unknown model: {name!r}; see 'llm async models' for the model ids"
        ) from None


def _per_model_setting(name: str) -> settings.Spec:
    spec = settings.SPECS.get(name)
    if spec is None:
        raise click.ClickException(
            f"Unknown setting {name!r}; per-model settings: "
            + ", ".join(n for n, s in settings.SPECS.items() if s.per_model)
        )
    if not spec.per_model:
        raise click.ClickException(
            f"{name} applies to the whole process: set the {spec.env_var} environment variable"
        )
    return spec


@async_group.command(name="set")
@click.argument("model")
@click.argument("setting")
@click.argument("value")
def set_command(model: str, setting: str, value: str) -> None:
    """Store a per-model override, e.g. ``llm async set markov model_concurrency 2``."""
    _per_model_setting(setting)
    model_id = _model_id(model)
    try:
        parsed = settings.parse_value(setting, value, where=f"llm async set {model_id} {setting}")
        overrides = settings.read_overrides()
    except SettingError as error:
        raise click.ClickException(str(error)) from None
    overrides.setdefault(model_id, {})[setting] = parsed
    settings.write_overrides(overrides)
    env_var = settings.SPECS[setting].env_var
    click.echo(f"{model_id}: {setting}={value}")
    import os

    if env_var in os.environ:
        click.echo(f"Note: {env_var} is set in the environment and takes precedence", err=True)


@async_group.command(name="unset")
@click.argument("model")
@click.argument("setting")
def unset_command(model: str, setting: str) -> None:
    """Remove a per-model override."""
    _per_model_setting(setting)
    model_id = _model_id(model)
    try:
        overrides = settings.read_overrides()
    except SettingError as error:
        raise click.ClickException(str(error)) from None
    if setting not in overrides.get(model_id, {}):
        raise click.ClickException(f"{model_id} has no override for {setting}")
    del overrides[model_id][setting]
    settings.write_overrides(overrides)
    click.echo(f"{model_id}: {setting} unset")


def _add_workers_command() -> None:
    from .process.commands import workers_command

    async_group.add_command(workers_command)


_add_workers_command()


class CheckUsageError(click.ClickException):
    """A bad ``llm async check`` setting: exit code 2, like click's own usage errors."""

    exit_code = 2


def _check_settings(
    config_file: str | None,
    samples_file: str | None,
    values: dict[str, Any],
    expected: tuple[str, ...],
) -> dict[str, Any]:
    """The check's settings: --config, then --samples, then flags (later wins, tables merge)."""
    from conformance import runsettings

    flags = {key: value for key, value in values.items() if value}
    failures = {}
    for entry in expected:
        clause_id, sep, reason = entry.partition("=")
        if not sep or not clause_id.strip() or not reason.strip():
            raise CheckUsageError(
                f"--expect-failure {entry!r}: expected CLAUSE=REASON, "
                "e.g. --expect-failure 'concurrency.stdio=redirects fd 1'"
            )
        failures[clause_id.strip()] = reason.strip()
    if failures:
        flags[runsettings.EXPECTED] = failures
    try:
        layers = [
            runsettings.read_file(config_file) if config_file else {},
            runsettings.read_samples(samples_file) if samples_file else {},
            runsettings.check(flags, "command line"),
        ]
    except runsettings.SettingsError as error:
        raise CheckUsageError(str(error)) from None
    merged: dict[str, Any] = runsettings.merge(*layers)
    return merged


@async_group.command(name="check", context_settings={"ignore_unknown_options": True})
@click.argument("model_id")
@click.option("json_path", "--json", type=click.Path(dir_okay=False), help="Write a JSON report")
@click.option(
    "prompt_options",
    "-o",
    "--option",
    nargs=2,
    multiple=True,
    metavar="NAME VALUE",
    help="Option sent with every prompt, as with llm -o (repeatable)",
)
@click.option("--prompt", help="The sample prompt (default: a short English sentence)")
@click.option("--system", help="A system prompt sent with the sample prompt")
@click.option("--failing-prompt", help="A prompt that makes the model raise (errors.* clauses)")
@click.option(
    "valid_options",
    "--option-valid",
    nargs=2,
    multiple=True,
    metavar="NAME VALUE",
    help="A valid option value for options.valid (repeatable)",
)
@click.option(
    "invalid_options",
    "--option-invalid",
    nargs=2,
    multiple=True,
    metavar="NAME VALUE",
    help="An invalid option value for options.invalid (repeatable)",
)
@click.option(
    "samples_file",
    "--samples",
    type=click.Path(exists=True, dir_okay=False),
    help="TOML file of samples (prompt, options, invalid_options, tool, schema ...)",
)
@click.option(
    "expected",
    "--expect-failure",
    multiple=True,
    metavar="CLAUSE=REASON",
    help="A clause the model is known to fail, with text its failure message contains "
    "(repeatable; any other failure of the clause still fails)",
)
@click.option(
    "--isolation",
    type=click.Choice(["thread", "process"]),
    help="Run sync models in threads or worker processes (sets LLM_ASYNC_ISOLATION)",
)
@click.option(
    "config_file",
    "--config",
    type=click.Path(exists=True, dir_okay=False),
    help="TOML file of settings: its [tool.llm-conformance] table, else its top level",
)
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
def check_command(
    model_id: str,
    json_path: str | None,
    prompt_options: tuple[tuple[str, str], ...],
    prompt: str | None,
    system: str | None,
    failing_prompt: str | None,
    valid_options: tuple[tuple[str, str], ...],
    invalid_options: tuple[tuple[str, str], ...],
    samples_file: str | None,
    expected: tuple[str, ...],
    isolation: str | None,
    config_file: str | None,
    pytest_args: tuple[str, ...],
) -> None:
    """Run the conformance suite against MODEL_ID through the adapter.

    Exit code 0: every clause passed or was skipped for a capability the model lacks;
    1: a clause failed; 2: a usage or preflight error. Arguments after the options go to
    pytest (e.g. -k streaming, -x).
    """
    try:
        from conformance.runner import main
    except ImportError as error:
        raise CheckUsageError(
            "the conformance suite needs its extra: "
            "llm install 'llm-all-models-async[conformance]' "
            f"({error})"
        ) from None
    settings = _check_settings(
        config_file,
        samples_file,
        {
            "prompt_options": dict(prompt_options),
            "prompt": prompt,
            "system": system,
            "failing_prompt": failing_prompt,
            "options": dict(valid_options),
            "invalid_options": dict(invalid_options),
            "isolation": isolation,
        },
        expected,
    )
    raise SystemExit(main(model_id, json_path, list(pytest_args), settings))
