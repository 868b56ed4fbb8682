"""Fixtures for the Datasette end-to-end check: a real server process driven over HTTP as root."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import sqlite3
import statistics
import struct
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

DB_NAME = "e2e"
# llm plugins that make network requests at registration unless their fixture seeded files:
# loaded only by servers that set the fixture up.
PLUGIN_FIXTURES = {"llm-gpt4all": "gpt4all-smollm2"}
TABLE = "docs"
ADAPTER_DIST = "llm-all-models-async"
STARTUP_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0
POLL_INTERVAL_S = 0.2
# Requests timed while jobs run; each must answer within the test's bound.
PROBE_PATHS = ("/-/versions.json", f"/{DB_NAME}/{TABLE}.json?_size=3")

WORDS = [
    "apple", "river", "stone", "cloud", "lantern", "harbour", "meadow", "violin", "copper",
    "garden", "winter", "candle", "orchard", "compass", "falcon", "pebble", "thunder", "velvet",
]  # fmt: skip


def table_rows(count: int) -> list[str]:
    """Distinct, deterministic sentences of six or more words for the text column."""
    rows = []
    for i in range(count):
        words = [WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(6 + i % 4)]
        rows.append(f"row {i} " + " ".join(words))
    return rows


def make_database(path: Path, rows: Sequence[str]) -> None:
    """Create the SQLite database with one table holding a text column."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute(f"create table {TABLE} (id integer primary key, text text not null)")
        conn.executemany(f"insert into {TABLE} (text) values (?)", [(r,) for r in rows])
        conn.commit()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """In the child before exec: on Linux, get SIGTERM if pytest itself dies (PR_SET_PDEATHSIG)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)


def llm_plugin_dists() -> list[str]:
    """Names of the installed distributions that register `llm` entry points."""
    names = set()
    for dist in metadata.distributions():
        if any(ep.group == "llm" for ep in dist.entry_points):
            names.add(dist.metadata["Name"])
    return sorted(names)


def poll_until(
    check: Callable[[], Any], timeout: float, what: str, interval: float = POLL_INTERVAL_S
) -> Any:
    """Call `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@dataclass
class Form:
    """One HTML form as a browser would submit it."""

    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)
    options: dict[str, list[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class FormParser(HTMLParser):
    """Collect the POST forms of a page: default values, select options, field errors."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self._form: Form | None = None
        self._textarea: str | None = None
        self._select: str | None = None
        self._option: str | None = None
        self._in_errors = 0
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._form = Form(a.get("action", ""), a.get("method", "GET").upper())
            self.forms.append(self._form)
        if self._form is None:
            return
        name = a.get("name")
        if tag == "input" and name:
            kind = a.get("type", "text").lower()
            if kind not in ("checkbox", "radio", "submit") or "checked" in a:
                self._form.fields[name] = a.get("value", "")
        elif tag == "textarea" and name:
            self._textarea, self._text = name, []
        elif tag == "select" and name:
            self._select = name
            self._form.options[name] = []
        elif tag == "option" and self._select:
            self._option = a.get("value")
            self._text = []
            if "selected" in a or self._select not in self._form.fields:
                self._form.fields[self._select] = self._option or ""
        elif tag == "ul" and "errors" in a.get("class", "").split():
            self._in_errors += 1
        elif tag == "li" and self._in_errors:
            self._text = []

    def handle_data(self, data: str) -> None:
        self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if self._form is None:
            return
        if tag == "textarea" and self._textarea:
            value = "".join(self._text)
            # Browsers drop the single newline that follows <textarea>.
            if value.startswith("\r\n"):
                value = value[2:]
            elif value.startswith("\n"):
                value = value[1:]
            self._form.fields[self._textarea] = value
            self._textarea = None
        elif tag == "option" and self._select:
            value = self._option if self._option is not None else "".join(self._text)
            self._form.options[self._select].append(value)
        elif tag == "select":
            self._select = None
        elif tag == "li" and self._in_errors:
            self._form.errors.append("".join(self._text).strip())
        elif tag == "ul" and self._in_errors:
            self._in_errors -= 1
        elif tag == "form":
            self._form = None


def parse_post_form(page: str) -> Form:
    """The page's enrichment form (the page also has other POST forms, such as log out)."""
    parser = FormParser()
    parser.feed(page)
    forms = [f for f in parser.forms if f.method == "POST" and "/-/enrich/" in f.action]
    assert len(forms) == 1, "no single enrichment form on the page:\n" + page[:2000]
    return forms[0]


@dataclass
class JobWatch:
    """What was observed while waiting for enrichment jobs."""

    job_ids: list[int]
    seconds: float
    latencies: dict[str, list[float]]
    samples: list[dict[int, int]]

    def all_latencies(self) -> list[float]:
        return [v for values in self.latencies.values() for v in values]

    def overlapped(self, total: int) -> bool:
        """True when some poll saw every job part-way through: they ran at the same time."""
        return any(all(0 < done < total for done in s.values()) for s in self.samples)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"jobs": self.job_ids, "job_seconds": round(self.seconds, 2)}
        for path, values in self.latencies.items():
            if values:
                out[path] = {
                    "n": len(values),
                    "median_ms": round(statistics.median(values) * 1000, 1),
                    "max_ms": round(max(values) * 1000, 1),
                }
        return out


class DatasetteServer:
    """A running `datasette serve` process and an HTTP session logged in as root."""

    def __init__(
        self, process: subprocess.Popen[bytes], port: int, log_path: Path, env: Mapping[str, str]
    ) -> None:
        import httpx

        self.env = dict(env)
        self.user_dir = Path(env["LLM_USER_PATH"])
        self.process = process
        self.base_url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.client = httpx.Client(base_url=self.base_url, timeout=30.0)

    # -- lifecycle ---------------------------------------------------------------------------
    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])

    def _root_login_url(self) -> str | None:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"datasette exited with code {self.process.returncode}:\n{self.log_tail()}"
            )
        for line in self.log_path.read_text(errors="replace").splitlines():
            if "/-/auth-token?token=" in line:
                return line.strip()
        return None

    def _ready(self) -> bool:
        import httpx

        try:
            return self.client.get("/-/versions.json").status_code == 200
        except httpx.TransportError:
            return False

    def start(self) -> None:
        """Wait until the server answers, then log in with the root URL that `--root` printed."""
        login = poll_until(self._root_login_url, STARTUP_TIMEOUT_S, "the --root login URL")
        try:
            poll_until(self._ready, STARTUP_TIMEOUT_S, "datasette to answer")
        except TimeoutError as exc:
            raise RuntimeError(f"{exc}\n{self.log_tail()}") from exc
        parts = urllib.parse.urlsplit(login)
        response = self.client.get(f"{parts.path}?{parts.query}")
        assert response.status_code == 302, (response.status_code, response.text[:500])
        assert "ds_actor" in self.client.cookies, "the root login set no ds_actor cookie"
        actor = self.client.get("/-/actor.json").json()["actor"]
        assert actor == {"id": "root"}, actor

    def stop(self) -> None:
        """Stop the server's process group: SIGTERM, then SIGKILL if it lingers."""
        self.client.close()
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT_S)

    # -- the enrichment UI, as a browser uses it ---------------------------------------------
    def enrichment_path(self, enrichment: str = "llm") -> str:
        return f"/-/enrich/{DB_NAME}/{TABLE}/{enrichment}"

    @staticmethod
    def page_form(page: str) -> Form:
        return parse_post_form(page)

    def get_form(self, enrichment: str = "llm") -> Form:
        response = self.client.get(self.enrichment_path(enrichment))
        assert response.status_code == 200, (response.status_code, self.log_tail())
        return parse_post_form(response.text)

    def submit_form(self, form: Form, overrides: Mapping[str, str]):
        """POST the form with some fields changed, with the headers a same-origin browser sends."""
        data = {**form.fields, **overrides}
        return self.client.post(
            form.action or self.enrichment_path(),
            content=urllib.parse.urlencode(data),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Origin": self.base_url,
                "Sec-Fetch-Site": "same-origin",
                "Referer": self.base_url + self.enrichment_path(),
            },
        )

    def start_job(self, model: str, output_column: str, prompt: str = "{{ text }}") -> int:
        """Fill in and submit the LLM enrichment form; return the new job's id."""
        form = self.get_form()
        assert model in form.options.get("model", []), (
            f"{model!r} is not offered by the form; choices: {form.options.get('model')}"
        )
        response = self.submit_form(
            form, {"model": model, "prompt": prompt, "output_column": output_column}
        )
        assert response.status_code == 302, (
            f"form POST answered {response.status_code}: {parse_post_form(response.text).errors}"
            if response.status_code == 200
            else (response.status_code, response.text[:1000], self.log_tail())
        )
        query = urllib.parse.urlsplit(response.headers["location"]).query
        return int(urllib.parse.parse_qs(query)["_enrichment_job"][0])

    def job_progress(self, job_id: int) -> dict[str, Any]:
        response = self.client.get(f"/-/enrichment-jobs/{DB_NAME}/{job_id}")
        assert response.status_code == 200, (response.status_code, self.log_tail())
        return response.json()

    def wait_for_jobs(self, job_ids: Sequence[int], timeout: float) -> JobWatch:
        """Poll the jobs' progress endpoint until all are complete, timing other requests."""
        latencies: dict[str, list[float]] = {path: [] for path in PROBE_PATHS}
        samples: list[dict[int, int]] = []
        started = time.monotonic()
        deadline = started + timeout
        while True:
            progress = {job_id: self.job_progress(job_id) for job_id in job_ids}
            samples.append({j: sum(s["count"] for s in p["sections"]) for j, p in progress.items()})
            if all(p["is_complete"] for p in progress.values()):
                break
            for path in PROBE_PATHS:
                t0 = time.perf_counter()
                response = self.client.get(path)
                latencies[path].append(time.perf_counter() - t0)
                assert response.status_code == 200, (path, response.status_code)
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"jobs {list(job_ids)} not complete after {timeout:.0f} s: {progress}\n"
                    + self.log_tail()
                )
            time.sleep(POLL_INTERVAL_S)
        return JobWatch(list(job_ids), time.monotonic() - started, latencies, samples)

    # -- reading results back over HTTP --------------------------------------------------------
    def sql(self, query: str, **params: Any) -> list[dict[str, Any]]:
        response = self.client.get(
            f"/{DB_NAME}/-/query.json", params={"sql": query, "_shape": "array", **params}
        )
        assert response.status_code == 200, (response.status_code, response.text[:500])
        return response.json()

    def job_row(self, job_id: int) -> dict[str, Any]:
        return self.sql("select * from _enrichment_jobs where id = :id", id=job_id)[0]

    def error_rows(self, job_id: int | None = None) -> list[dict[str, Any]]:
        if job_id is None:
            return self.sql("select * from _enrichment_errors")
        return self.sql("select * from _enrichment_errors where job_id = :id", id=job_id)

    def rows(self) -> list[dict[str, Any]]:
        return self.sql(f"select * from {TABLE} order by id")

    # -- the adapter's worker processes, as `llm async workers --json` lists them -------------
    def workers(self) -> list[dict[str, Any]]:
        result = subprocess.run(
            [sys.executable, "-m", "llm", "async", "workers", "--json"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
        return json.loads(result.stdout)


def _datasette_config(models: list[Any]) -> dict[str, Any]:
    """datasette.json: datasette-llm's allow-list and per-model options for enrichments."""
    return {"plugins": {"datasette-llm": {"purposes": {"enrichments": {"models": models}}}}}


@contextlib.contextmanager
def _llm_fixtures(names: Sequence[str], user_dir: Path, work_dir: Path) -> Iterator[dict[str, str]]:
    """Enter the conformance fixtures by name; yield the environment they ask for."""
    env: dict[str, str] = {}
    if not names:
        yield env
        return
    from matrix.fixtures import FIXTURES, FixtureContext

    with contextlib.ExitStack() as stack:
        for name in names:
            ctx = FixtureContext(user_dir=user_dir, work_dir=work_dir)
            env.update(stack.enter_context(FIXTURES[name](ctx)))
        yield env


@pytest.fixture
def datasette_server(tmp_path: Path) -> Iterator[Callable[..., DatasetteServer]]:
    """Start `datasette serve --root` processes on free ports; stop them all at teardown.

    `start(models=[...], adapter=True, llm_fixtures=[...], rows=24, env={})`: `models` is
    datasette-llm's `purposes.enrichments.models` list; `adapter=False` loads every installed
    llm plugin except the adapter (through `LLM_LOAD_PLUGINS`). A plugin of
    `PLUGIN_FIXTURES` is loaded only when its fixture is among `llm_fixtures`.
    """
    with contextlib.ExitStack() as stack:
        counter = iter(range(1000))

        def start(
            *,
            models: list[Any],
            adapter: bool = True,
            llm_fixtures: Sequence[str] = (),
            rows: int = 24,
            env: Mapping[str, str] | None = None,
        ) -> DatasetteServer:
            base = tmp_path / f"server{next(counter)}"
            user_dir, work_dir = base / "llm-user", base / "work"
            user_dir.mkdir(parents=True)
            work_dir.mkdir()
            db_path = base / f"{DB_NAME}.db"
            make_database(db_path, table_rows(rows))
            config_path = base / "datasette.json"
            config_path.write_text(json.dumps(_datasette_config(models), indent=2))
            server_env = {k: v for k, v in os.environ.items() if k != "LLM_LOAD_PLUGINS"}
            server_env.update(
                LLM_USER_PATH=str(user_dir), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1"
            )
            server_env.update(stack.enter_context(_llm_fixtures(llm_fixtures, user_dir, work_dir)))
            unseeded = {d for d, f in PLUGIN_FIXTURES.items() if f not in llm_fixtures}
            installed = llm_plugin_dists()
            if not adapter or unseeded & set(installed):
                skipped = unseeded | (set() if adapter else {ADAPTER_DIST})
                plugins = [d for d in installed if d not in skipped]
                server_env["LLM_LOAD_PLUGINS"] = ",".join(plugins)
            server_env.update(env or {})
            port = free_port()
            log_path = base / "datasette.log"
            log = stack.enter_context(log_path.open("wb"))
            command = [
                sys.executable, "-m", "datasette", "serve", str(db_path),
                "--host", "127.0.0.1", "--port", str(port), "--root", "-c", str(config_path),
            ]  # fmt: skip
            process = subprocess.Popen(
                command, env=server_env, cwd=base, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent,
            )  # fmt: skip
            server = DatasetteServer(process, port, log_path, server_env)
            stack.callback(server.stop)
            server.start()
            return server

        yield start


class FileOpens:
    """Counts every open(2) of one file, by any process, with Linux inotify (IN_OPEN).

    How the e2e check sees a weight load happen inside a worker process it cannot reach.
    """

    IN_OPEN = 0x20
    IN_NONBLOCK = 0o4000

    def __init__(self, path: Path) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(self.IN_NONBLOCK)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if self._libc.inotify_add_watch(self.fd, os.fsencode(path), self.IN_OPEN) < 0:
            error = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(error, f"inotify_add_watch({path})")
        self.opens = 0

    def count(self) -> int:
        """Opens seen so far (reads the pending events without blocking)."""
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return self.opens
            offset = 0
            while offset < len(data):
                _wd, mask, _cookie, length = struct.unpack_from("iIII", data, offset)
                offset += 16 + length
                self.opens += bool(mask & self.IN_OPEN)

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture
def file_opens() -> Iterator[Callable[[Path], FileOpens]]:
    """`file_opens(path)` starts counting the opens of `path`; closed at teardown."""
    if not sys.platform.startswith("linux"):
        pytest.skip("counting file opens needs Linux inotify")
    watches: list[FileOpens] = []

    def watch(path: Path) -> FileOpens:
        watches.append(FileOpens(path))
        return watches[-1]

    yield watch
    for found in watches:
        found.close()


LATENCIES = pytest.StashKey[list[tuple[str, dict[str, Any]]]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[LATENCIES] = []


@pytest.fixture
def record_watch(request: pytest.FixtureRequest) -> Callable[[JobWatch], None]:
    """Keep what a test measured for the end-of-run summary (and the junit properties)."""

    def record(watch: JobWatch) -> None:
        summary = watch.summary()
        request.config.stash[LATENCIES].append((request.node.nodeid, summary))
        request.node.user_properties.append(("datasette_watch", json.dumps(summary)))

    return record


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    entries = config.stash.get(LATENCIES, [])
    if not entries:
        return
    terminalreporter.section("Datasette latencies while enrichment jobs ran")
    for nodeid, summary in entries:
        terminalreporter.write_line(f"{nodeid.split('::')[-1]}: {json.dumps(summary)}")
    report = os.environ.get("DATASETTE_E2E_REPORT")
    if report:
        Path(report).write_text(json.dumps(dict(entries), indent=2))
