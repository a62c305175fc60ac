"""The browser tier: the dashboard (/ui/) in Debian's chromium, driven by playwright, against
a real stack: `trainserve api` on a socket and `trainserve worker`, on their own PostgreSQL
database and Redis queue. One stack and one browser for the folder; a fresh browser context
(its own sessionStorage) per test.

Every test's page is watched: console errors, uncaught exceptions, failed requests and
answers of 400 or more are collected, and no requested URL may hold the key."""

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.integration.conftest import ADMIN_KEY
from tests.support import Proc, Served, api_and_worker, seed_spec, wait_until

CHROMIUM = Path("/usr/bin/chromium")
MODEL = "ui-digits"


@dataclass
class Stack:
    served: Served
    http: httpx.Client

    @property
    def url(self) -> str:
        return self.served.url

    @property
    def worker(self) -> Proc:
        return self.served.worker

    def logs(self) -> str:
        return self.served.logs()

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post("/v1/jobs", json=spec)
        assert response.status_code == 202, response.text
        return dict(response.json())

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.http.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def metrics(self, job_id: str) -> list[dict[str, Any]]:
        response = self.http.get(f"/v1/jobs/{job_id}/metrics")
        assert response.status_code == 200, response.text
        return list(response.json())

    def pause_worker(self) -> None:
        """Stop the worker's processes (SIGSTOP): its job holds still mid-run."""
        os.killpg(self.worker.popen.pid, signal.SIGSTOP)

    def resume_worker(self) -> None:
        os.killpg(self.worker.popen.pid, signal.SIGCONT)

    def wait_job(self, job_id: str, timeout: float = 120) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            job = self.job(job_id)
            return job if job["status"] in {"succeeded", "failed", "cancelled"} else None

        job: dict[str, Any] = wait_until(done, timeout, f"job {job_id} to end", interval=0.25)
        return job


def small_spec(name: str, epochs: int, **training: Any) -> dict[str, Any]:
    """The seed job, smaller: few epochs, a narrow hidden layer."""
    spec = seed_spec(name, epochs=epochs, **training)
    spec["model"]["hidden"] = [16]
    return spec


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("browser-stack")
    # lease_s: a test pauses the worker (SIGSTOP) mid-job, and nothing may requeue it meanwhile
    with api_and_worker(workdir, ADMIN_KEY, lease_s="60") as served:
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        with httpx.Client(base_url=served.url, headers=headers, timeout=30) as http:
            yield Stack(served, http)


@pytest.fixture(scope="package")
def versions(stack: Stack) -> list[dict[str, Any]]:
    """Two versions of MODEL, trained by the real worker, and an uploaded CSV dataset."""
    jobs = [stack.submit(small_spec(MODEL, epochs=2, seed=seed)) for seed in (0, 1)]
    done = [stack.wait_job(job["id"]) for job in jobs]
    assert [j["status"] for j in done] == ["succeeded"] * 2, (done, stack.logs())
    return done


@pytest.fixture(scope="package")
def dataset(stack: Stack) -> dict[str, Any]:
    rows = "\n".join(f"{i % 7},{(i * 3) % 11},{'yes' if i % 2 else 'no'}" for i in range(40))
    response = stack.http.post(
        "/v1/datasets",
        data={"name": "ui-table", "format": "csv", "target": "label"},
        files={"file": ("t.csv", f"a,b,label\n{rows}\n", "text/csv")},
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"the browser tests need Debian's chromium at {CHROMIUM}: run scripts/browser.sh "
            "(apt-get install chromium)",
            pytrace=False,
        )
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
    yield browser
    browser.close()


@dataclass
class Watched:
    """A page and what went wrong on it."""

    page: Page
    context: BrowserContext
    stack: Stack
    errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)

    def open(self, hash_: str = "") -> None:
        self.page.goto(f"{self.stack.url}/ui/{hash_}")

    def sign_in(self, key: str = ADMIN_KEY) -> None:
        self.page.locator("#key").fill(key)
        self.page.locator("#login-form button[type=submit]").click()

    def go(self, hash_: str) -> None:
        """Another page of the dashboard, as a click on a link would open it."""
        self.page.evaluate("(h) => { location.hash = h; }", hash_)

    def assert_clean(self) -> None:
        assert self.errors == [] and self.failed == [], (self.errors, self.failed)


def watch(context: BrowserContext, stack: Stack) -> Watched:
    page = context.new_page()
    page.set_default_timeout(15_000)
    watched = Watched(page, context, stack)
    page.on("console", lambda m: m.type == "error" and watched.errors.append(m.text))
    page.on("pageerror", lambda e: watched.errors.append(f"uncaught: {e}"))
    page.on("request", lambda r: watched.urls.append(r.url))
    page.on("requestfailed", lambda r: _failed(watched, r))
    page.on("response", lambda r: r.status >= 400 and watched.failed.append(f"{r.status} {r.url}"))
    return watched


def _failed(watched: Watched, request: Any) -> None:
    # A stream or a poll the page aborts itself when it moves on (AbortController) is not a
    # failure; anything else is.
    if request.failure != "net::ERR_ABORTED":
        watched.failed.append(f"{request.failure} {request.url}")


@pytest.fixture
def ui(browser: Browser, stack: Stack) -> Iterator[Watched]:
    context = browser.new_context()
    watched = watch(context, stack)
    yield watched
    leaked = [u for u in watched.urls if ADMIN_KEY in u]
    context.close()
    assert leaked == [], "the key was put in a URL"
