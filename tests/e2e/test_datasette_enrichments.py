"""End to end: Datasette's LLM enrichment runs sync-only llm models through the adapter.

A real `datasette serve` process (datasette-enrichments-llm + datasette-llm) is driven over HTTP
the way its UI is: GET the enrichment form, POST it as root, poll the job's progress endpoint.
Enable with `pip install torch==2.13.0 && pip install -r e2e/requirements-datasette.txt`
(see e2e/README.md); without datasette installed the whole module is skipped.
"""

from __future__ import annotations

import importlib.util
import statistics
import time
from importlib import metadata
from typing import Any

import pytest

ENABLE_HINT = (
    "to enable: pip install torch==2.13.0 && pip install -r e2e/requirements-datasette.txt "
    "&& pip install -e . (see e2e/README.md)"
)
REQUIRED_MODULES = {
    "datasette": "datasette==1.0a41",
    "datasette_enrichments": "datasette-enrichments==0.6a0",
    "datasette_enrichments_llm": "datasette-enrichments-llm==0.2a1",
    "datasette_llm": "datasette-llm==0.1a8",
    "httpx": "httpx",
    "llm": "llm",
    "llm_markov": "llm-markov==0.1",
}
_missing = [req for mod, req in REQUIRED_MODULES.items() if importlib.util.find_spec(mod) is None]
if _missing:
    pytest.skip(
        f"Datasette end-to-end check needs {', '.join(_missing)} (not installed); {ENABLE_HINT}",
        allow_module_level=True,
    )


def _per_model_options() -> bool:
    """datasette-llm applies `purposes.<name>.models[].options` from 0.1a7 (needs llm>=0.32)."""
    from packaging.version import Version

    return Version(metadata.version("datasette-llm")) >= Version("0.1a7")


ROWS = 24
OPTIONS_APPLIED = _per_model_options()
MARKOV = {"model": "markov", "options": {"length": 20, "delay": 0.05}}
# datasette-llm 0.1a6, the last release that allows llm 0.30/0.31, ignores the options: then
# llm-markov's defaults apply (100 words, 0.02 s apart).
MARKOV_LENGTH, MARKOV_DELAY_S = (20, 0.05) if OPTIONS_APPLIED else (100, 0.02)
# A markov row spends ROW_SECONDS (1 s) asleep inside the sync model. Were the model run on the
# event loop, a request arriving mid-row would wait half a row on average.
ROW_SECONDS = MARKOV_LENGTH * MARKOV_DELAY_S
JOB_SECONDS = ROWS * ROW_SECONDS
MRCHATTERBOX = "mrchatterbox"
LATENCY_BOUND_S = 2.0
MEDIAN_BOUND_S = ROW_SECONDS / 2
JOB_TIMEOUT_S = 3 * JOB_SECONDS + 60
TEST_TIMEOUT_S = 2 * JOB_TIMEOUT_S + 90


def _adapter_missing() -> str | None:
    try:
        version = metadata.version("llm-all-models-async")
    except metadata.PackageNotFoundError:
        return f"the adapter llm-all-models-async is not installed; {ENABLE_HINT}"
    from packaging.version import Version

    if Version(version) < Version("0.2"):
        return f"llm-all-models-async {version} is the old release; pip install -e . instead"
    return None


def _mrchatterbox_missing() -> str | None:
    needed = (("torch", "torch==2.13.0"), ("llm_mrchatterbox", "llm-mrchatterbox==0.1.1"))
    for module, requirement in needed:
        if importlib.util.find_spec(module) is None:
            return f"{requirement} is not installed; {ENABLE_HINT}"
    try:
        from matrix.fixtures import FIXTURES
    except ImportError as exc:
        return (
            f"matrix.fixtures is not importable ({exc}): the tiny mrchatterbox checkpoint "
            "comes from the conformance fixtures (pip install -e . from a checkout that has them)"
        )
    absent = [name for name in ("mrchatterbox", "mrchatterbox-fixed") if name not in FIXTURES]
    if absent:
        return f"matrix.fixtures.FIXTURES lacks {absent} (the tiny checkpoints)"
    return None


ADAPTER_MISSING = _adapter_missing()
MRCHATTERBOX_MISSING = _mrchatterbox_missing()
needs_adapter = pytest.mark.skipif(ADAPTER_MISSING is not None, reason=ADAPTER_MISSING or "")
needs_mrchatterbox = pytest.mark.skipif(
    MRCHATTERBOX_MISSING is not None, reason=MRCHATTERBOX_MISSING or ""
)
pytestmark = pytest.mark.slow


def assert_job_complete(
    server: Any, job_id: int, column: str, count: int = ROWS
) -> list[dict[str, Any]]:
    """The job finished every row with no error, and every row has a non-empty output."""
    job = server.job_row(job_id)
    assert (job["status"], job["row_count"], job["done_count"], job["error_count"]) == (
        "finished", count, count, 0,
    ), job  # fmt: skip
    errors = server.error_rows(job_id)
    assert errors == [], f"_enrichment_errors for job {job_id}: {errors}"
    rows = server.rows()
    assert len(rows) == count
    empty = [row["id"] for row in rows if not (row[column] or "").strip()]
    assert empty == [], f"rows with an empty {column!r}: {empty}\n{server.log_tail()}"
    return rows


def assert_markov_output(rows: list[dict[str, Any]], column: str) -> None:
    """MARKOV_LENGTH words, all from the row's text: the template and the options arrived."""
    for row in rows:
        words = row[column].split()
        assert len(words) == MARKOV_LENGTH, (row["id"], row[column])
        assert set(words) <= set(row["text"].split()), (row["text"], row[column])


def assert_responsive(watch: Any) -> None:
    """Requests made while the jobs ran were answered promptly."""
    latencies = watch.all_latencies()
    assert len(latencies) >= 6, f"too few requests timed during the job: {watch.summary()}"
    assert max(latencies) < LATENCY_BOUND_S, watch.summary()
    assert statistics.median(latencies) < MEDIAN_BOUND_S, watch.summary()


@needs_adapter
@pytest.mark.timeout(TEST_TIMEOUT_S)
def test_markov_enriches_every_row(datasette_server: Any, record_watch: Any) -> None:
    server = datasette_server(models=[MARKOV], rows=ROWS)
    job_id = server.start_job("markov", "markov_out")
    watch = server.wait_for_jobs([job_id], timeout=JOB_TIMEOUT_S)
    record_watch(watch)
    rows = assert_job_complete(server, job_id, "markov_out")
    assert_markov_output(rows, "markov_out")
    assert_responsive(watch)
    # Rows run one after another, each at least ROW_SECONDS inside the sync model.
    assert watch.seconds >= JOB_SECONDS * 0.9, watch.summary()


@needs_adapter
@needs_mrchatterbox
@pytest.mark.timeout(TEST_TIMEOUT_S)
def test_mrchatterbox_enriches_every_row(datasette_server: Any, record_watch: Any) -> None:
    server = datasette_server(models=[MRCHATTERBOX], llm_fixtures=["mrchatterbox"], rows=ROWS)
    job_id = server.start_job(MRCHATTERBOX, "chatterbox_out")
    watch = server.wait_for_jobs([job_id], timeout=JOB_TIMEOUT_S)
    record_watch(watch)
    assert_job_complete(server, job_id, "chatterbox_out")
    assert_responsive(watch)


@needs_adapter
@pytest.mark.timeout(TEST_TIMEOUT_S)
@pytest.mark.parametrize("model_concurrency", [1, 2])
def test_two_markov_jobs_at_once(
    datasette_server: Any, record_watch: Any, model_concurrency: int
) -> None:
    """Two jobs, one model: the adapter's per-model limit decides whether their rows overlap."""
    server = datasette_server(
        models=[MARKOV],
        rows=ROWS,
        env={"LLM_ASYNC_MODEL_CONCURRENCY": str(model_concurrency)},
    )
    first = server.start_job("markov", "markov_a")
    second = server.start_job("markov", "markov_b")
    watch = server.wait_for_jobs([first, second], timeout=JOB_TIMEOUT_S * 2)
    record_watch(watch)
    for job_id, column in ((first, "markov_a"), (second, "markov_b")):
        assert_markov_output(assert_job_complete(server, job_id, column), column)
    assert watch.overlapped(ROWS), f"the jobs never ran at the same time: {watch.samples}"
    assert_responsive(watch)
    assert server.error_rows() == []
    if model_concurrency == 1:
        # The default serialises rows of one model: the two jobs take turns.
        assert watch.seconds >= 2 * JOB_SECONDS * 0.9, watch.summary()
    else:
        # Two slots: taking turns would need at least 2 * JOB_SECONDS of sleeping alone, so
        # finishing sooner proves rows of both jobs ran at once (load only adds time).
        assert watch.seconds < 2 * JOB_SECONDS, watch.summary()


@needs_adapter
@needs_mrchatterbox
@pytest.mark.timeout(TEST_TIMEOUT_S)
def test_markov_and_mrchatterbox_at_once(datasette_server: Any, record_watch: Any) -> None:
    """Two sync models at once; Mr Chatterbox's fixed-reply checkpoint allows exact output."""
    from matrix.fixtures.mrchatterbox import FIXED_REPLY

    server = datasette_server(
        models=[MARKOV, MRCHATTERBOX], llm_fixtures=["mrchatterbox-fixed"], rows=ROWS
    )
    first = server.start_job("markov", "markov_out")
    second = server.start_job(MRCHATTERBOX, "chatterbox_out")
    watch = server.wait_for_jobs([first, second], timeout=JOB_TIMEOUT_S)
    record_watch(watch)
    assert_markov_output(assert_job_complete(server, first, "markov_out"), "markov_out")
    rows = assert_job_complete(server, second, "chatterbox_out")
    assert {row["chatterbox_out"] for row in rows} == {FIXED_REPLY}
    assert watch.overlapped(ROWS), f"the jobs never ran at the same time: {watch.samples}"
    assert_responsive(watch)
    assert server.error_rows() == []


@pytest.mark.timeout(120)
def test_without_adapter_markov_is_not_a_valid_choice(datasette_server: Any) -> None:
    """Same server and config, every llm plugin but the adapter: the sync model is refused."""
    server = datasette_server(models=[MARKOV], adapter=False, rows=ROWS)
    form = server.get_form()
    assert "markov" not in form.options["model"], form.options
    response = server.submit_form(
        form, {"model": "markov", "prompt": "{{ text }}", "output_column": "markov_out"}
    )
    assert response.status_code == 200, (response.status_code, response.headers)
    assert server.page_form(response.text).errors == ["Not a valid choice."]
    jobs = server.sql("select count(*) as n from sqlite_master where name = '_enrichment_jobs'")
    assert jobs == [{"n": 0}], "a job was created for a model the form refused"


# -- process isolation (issue 8) ---------------------------------------------------------------

PROCESS = {"LLM_ASYNC_ISOLATION": "process"}
MANY_ROWS = 1000
MANY_ROWS_TIMEOUT_S = 900
GPT4ALL = {"model": "SmolLM2-135M-Instruct-Q4_1", "options": {"max_tokens": 8, "temp": 0.0}}
GPT4ALL_ROWS = 6
POLL_INTERVAL_S = 0.05


def _gpt4all_missing() -> str | None:
    for module, requirement in (("llm_gpt4all", "llm-gpt4all==0.4"), ("gguf", "gguf==0.19.0")):
        if importlib.util.find_spec(module) is None:
            return (
                f"{requirement} is not installed; pip install llm-gpt4all==0.4 gpt4all==2.8.2 "
                "gguf==0.19.0 (the gpt4all-smollm2 fixture re-tags the SmolLM2 GGUF)"
            )
    return None


GPT4ALL_MISSING = _gpt4all_missing()


@needs_adapter
@needs_mrchatterbox
@pytest.mark.timeout(MANY_ROWS_TIMEOUT_S + 120)
def test_mrchatterbox_thousand_rows_one_weight_load_in_process_isolation(
    datasette_server: Any, record_watch: Any, file_opens: Any
) -> None:
    """1,000 rows in one Datasette process: no RecursionError, and the checkpoint is opened
    once, by the one warm worker that served every row (thread mode reloads it per row)."""
    from matrix.fixtures.mrchatterbox import FIXED_REPLY

    server = datasette_server(
        models=[MRCHATTERBOX], llm_fixtures=["mrchatterbox-fixed"], rows=MANY_ROWS, env=PROCESS
    )
    (checkpoint,) = server.user_dir.rglob("model_*.pt")
    opens = file_opens(checkpoint)
    job_id = server.start_job(MRCHATTERBOX, "chatterbox_out")
    watch = server.wait_for_jobs([job_id], timeout=MANY_ROWS_TIMEOUT_S)
    record_watch(watch)
    rows = assert_job_complete(server, job_id, "chatterbox_out", MANY_ROWS)
    assert {row["chatterbox_out"] for row in rows} == {FIXED_REPLY}
    assert opens.count() == 1, f"the checkpoint was opened {opens.count()} times (loads)"
    workers = [w for w in server.workers() if w["model_id"] == MRCHATTERBOX]
    assert [w["prompts_served"] for w in workers] == [MANY_ROWS], workers
    assert_responsive(watch)


@needs_adapter
@pytest.mark.skipif(GPT4ALL_MISSING is not None, reason=GPT4ALL_MISSING or "")
@pytest.mark.timeout(TEST_TIMEOUT_S)
def test_gpt4all_enriches_rows_and_the_request_log_survives_in_process_isolation(
    datasette_server: Any, record_watch: Any
) -> None:
    """gpt4all points fds 1/2 at /dev/null while it generates: in a worker process that is the
    worker's own business, and every request Datasette served meanwhile reaches its log."""
    server = datasette_server(
        models=[GPT4ALL], llm_fixtures=["gpt4all-smollm2"], rows=GPT4ALL_ROWS, env=PROCESS
    )
    job_id = server.start_job(GPT4ALL["model"], "gpt4all_out")
    markers: list[str] = []
    while not server.job_progress(job_id)["is_complete"]:
        marker = f"/-/versions.json?while_streaming={len(markers)}"
        assert server.client.get(marker).status_code == 200
        markers.append(marker)
        time.sleep(POLL_INTERVAL_S)  # pacing the requests, not waiting for anything
    watch = server.wait_for_jobs([job_id], timeout=JOB_TIMEOUT_S)
    record_watch(watch)
    assert_job_complete(server, job_id, "gpt4all_out", GPT4ALL_ROWS)
    assert markers, "the job finished before any request could be made during it"
    log = server.log_path.read_text(errors="replace")
    lost = [marker for marker in markers if marker not in log]
    assert lost == [], (
        f"{len(lost)} of {len(markers)} requests made during the job are missing from "
        f"Datasette's request log:\n{server.log_tail()}"
    )
