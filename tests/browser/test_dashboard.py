"""The dashboard in a real browser: sign-in, each page, a job's live curves, moving an alias."""

import re
import secrets
from typing import Any

from playwright.sync_api import Browser, expect

from tests.browser.conftest import MODEL, Stack, Watched, small_spec, watch
from tests.integration.conftest import ADMIN_KEY
from tests.support import held_out_digits, wait_until


def test_a_wrong_key_brings_back_the_form_with_the_reason(ui: Watched) -> None:
    ui.open()
    expect(ui.page.locator("#login")).to_be_visible()
    ui.sign_in("ts_not-a-key")
    error = ui.page.locator("#login-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("refused")
    expect(error).to_contain_text("401")
    expect(ui.page.locator("#nav")).to_be_hidden()
    # The browser logs the refused request itself; nothing else may go wrong.
    assert all("401" in e for e in ui.errors), ui.errors
    assert all(f.startswith("401 ") and "/v1/" in f for f in ui.failed), ui.failed


def test_the_key_lasts_the_tab_not_a_new_context(
    ui: Watched, browser: Browser, stack: Stack
) -> None:
    ui.open()
    ui.sign_in()
    expect(ui.page.locator("#jobs")).to_be_visible()
    ui.page.reload()
    expect(ui.page.locator("#jobs")).to_be_visible()
    expect(ui.page.locator("#login")).to_be_hidden()
    ui.page.locator("#sign-out").click()
    expect(ui.page.locator("#login")).to_be_visible()
    assert ui.page.evaluate("sessionStorage.length") == 0
    ui.assert_clean()

    fresh = browser.new_context()
    try:
        other = watch(fresh, stack)
        other.open("#/jobs")
        expect(other.page.locator("#login")).to_be_visible()
        expect(other.page.locator("#jobs")).to_have_count(0)
        other.assert_clean()
        assert [u for u in other.urls if ADMIN_KEY in u] == []
    finally:
        fresh.close()


def test_every_page_loads_clean(
    ui: Watched, versions: list[dict[str, Any]], dataset: dict[str, Any]
) -> None:
    ui.open()
    expect(ui.page.locator("#login")).to_be_visible()
    ui.sign_in()
    rows = ui.page.locator("#jobs tbody tr[data-job]")
    expect(rows.first).to_be_visible()
    first = versions[0]
    row = ui.page.locator(f"#jobs tr[data-job='{first['id']}']")
    expect(row.locator("[data-status]")).to_have_text("succeeded")
    expect(row).to_contain_text("2/2")
    expect(row).to_contain_text("val_accuracy")

    row.get_by_role("link", name=MODEL).click()
    expect(ui.page.locator("main h1")).to_contain_text(f"Job: {MODEL}")
    expect(ui.page.locator("[data-chart=loss]")).to_have_attribute("data-points", "2")
    expect(ui.page.locator("[data-chart=loss] polyline")).to_have_count(2)  # train and val
    confusion = ui.page.locator("[data-report=validation] table.confusion")
    expect(confusion.locator("tbody tr")).to_have_count(10)  # digits: 10 classes
    expect(ui.page.locator("[data-report=validation] table.per-class tbody tr")).to_have_count(10)
    expect(ui.page.locator("#events")).to_contain_text("succeeded")
    expect(ui.page.locator("#cancel-job")).to_have_count(0)

    ui.go("#/models")
    expect(ui.page.locator(f"#models tr[data-model='{MODEL}']")).to_contain_text("v2")
    ui.page.get_by_role("link", name=MODEL).click()
    versions_table = ui.page.locator("#versions")
    expect(versions_table.locator("tbody tr")).to_have_count(2)
    expect(versions_table).to_contain_text("builtin digits")
    expect(versions_table.locator(f"a[href='#/jobs/{first['id']}']")).to_be_visible()

    ui.go("#/datasets")
    card = ui.page.locator(f"[data-dataset='{dataset['id']}']")
    expect(card).to_contain_text("ui-table")
    expect(card).to_contain_text("csv")
    expect(card).to_contain_text("rows")
    expect(card).to_contain_text("40")
    expect(card.locator(".chip")).to_have_count(2)  # classes no, yes

    for nowhere in ("#/nowhere", "#/jobs/%E0%A4%A"):  # the second is not valid percent-encoding
        ui.go(nowhere)
        expect(ui.page.locator("main h1")).to_have_text("Not found")
    ui.assert_clean()


def test_a_running_jobs_curve_grows_until_it_succeeds(
    ui: Watched, stack: Stack, versions: list[dict[str, Any]]
) -> None:
    """The worker is paused (SIGSTOP) twice mid-run, so the pages are seen mid-run however fast
    or loaded the machine is: the job's page grows over its event stream from one pause to the
    next, and the jobs list, polled, follows the job to its end."""
    epochs = 10
    ui.open()
    ui.sign_in()
    expect(ui.page.locator("#jobs")).to_be_visible()
    job = stack.submit(small_spec(f"ui-live-{secrets.token_hex(3)}", epochs=epochs))
    ui.go(f"#/jobs/{job['id']}")
    chart = ui.page.locator("[data-chart=loss]")
    status = ui.page.locator("main h1 [data-status]")
    expect(chart).to_be_visible()

    def pause_after(epoch: int) -> int:
        wait_until(lambda: stack.job(job["id"])["progress"]["epoch"] >= epoch, 90, "epochs", 0.02)
        stack.pause_worker()
        recorded = len({p["epoch"] for p in stack.metrics(job["id"])})
        assert epoch <= recorded < epochs, (recorded, "the job ran ahead of the test")
        return recorded

    try:
        first = pause_after(2)
        expect(chart).to_have_attribute("data-points", str(first))
        expect(chart.locator("polyline[data-series=train_loss]")).to_have_count(1)
        expect(status).to_have_text("running")
        expect(ui.page.locator("#cancel-job")).to_be_visible()
        stack.resume_worker()
        second = pause_after(first + 2)
        expect(chart).to_have_attribute("data-points", str(second))  # grown, over the stream
        ui.go("#/jobs")
        row = ui.page.locator(f"#jobs tr[data-job='{job['id']}']")
        expect(row.locator("[data-status]")).to_have_text("running")
        expect(row.locator(".progress")).to_have_attribute("data-epoch", str(second))
        expect(ui.page.locator("#poll-state")).to_contain_text("every 2 s")
    finally:
        stack.resume_worker()
    expect(row.locator("[data-status]")).to_have_text("succeeded", timeout=90_000)
    expect(row).to_contain_text(f"{epochs}/{epochs}")

    row.get_by_role("link").first.click()
    expect(status).to_have_text("succeeded")
    expect(chart).to_have_attribute("data-points", str(epochs))
    expect(ui.page.locator("[data-report=validation] table.confusion")).to_be_visible()
    expect(ui.page.locator("#cancel-job")).to_have_count(0)
    ui.assert_clean()


def test_the_stream_reconnects_from_the_last_id(ui: Watched) -> None:
    """sse.js's follow(): a stream that closes without `end` is opened again after `retry` ms
    with Last-Event-ID, the key in the header each time (the server is played by the test)."""
    ui.open()
    asked: list[dict[str, str]] = []
    bodies = [
        'retry: 50\n\nid: 3-4\nevent: metrics\ndata: {"epoch": 1}\n\n',
        'id: 5-6\nevent: status\ndata: {"status": "succeeded"}\n\nevent: end\ndata: {}\n\n',
    ]

    def serve(route: Any) -> None:
        asked.append(route.request.headers)
        body = bodies[min(len(asked), 2) - 1]
        route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=body)

    ui.page.route("**/v1/jobs/j1/events", serve)
    got = ui.page.evaluate(
        """async () => {
            sessionStorage.setItem("trainserve.key", "ts_played");
            const { follow } = await import("/ui/sse.js");
            const got = [];
            const signal = new AbortController().signal;
            await follow("/v1/jobs/j1/events", { signal, onMessage: (m) => got.push([m.event, m.id, m.data]) });
            sessionStorage.clear();
            return got;
        }"""
    )
    assert [a.get("last-event-id") for a in asked] == [None, "3-4"]
    assert all(a["authorization"] == "Bearer ts_played" for a in asked)
    assert got == [
        ["metrics", "3-4", {"epoch": 1}],
        ["status", "5-6", {"status": "succeeded"}],
        ["end", "5-6", {}],
    ]
    ui.assert_clean()


def test_a_running_job_is_cancelled_from_its_page(ui: Watched, stack: Stack) -> None:
    job = stack.submit(small_spec(f"ui-cancel-{secrets.token_hex(3)}", epochs=500))
    ui.open(f"#/jobs/{job['id']}")
    ui.sign_in()
    ui.page.locator("#cancel-job").click()
    dialog = ui.page.locator("dialog#confirm")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(job["id"])
    dialog.locator("#confirm-ok").click()
    expect(ui.page.locator("main h1 [data-status]")).to_have_text("cancelled", timeout=60_000)
    assert stack.wait_job(job["id"], timeout=60)["status"] == "cancelled"
    ui.assert_clean()


def test_moving_production_in_the_ui_moves_predict(
    ui: Watched, stack: Stack, versions: list[dict[str, Any]]
) -> None:
    put = stack.http.put(f"/v1/models/{MODEL}/aliases/production", json={"version": 1})
    assert put.status_code == 200, put.text
    rows, _ = held_out_digits()
    before = stack.http.post(f"/v1/models/{MODEL}/predict", json={"inputs": rows[:2]})
    assert before.json()["model_version"] == 1

    ui.open(f"#/models/{MODEL}")
    ui.sign_in()
    expect(ui.page.locator("#aliases tr[data-alias=production] td[data-version]")).to_have_text(
        "v1"
    )
    v2 = ui.page.locator("#versions tr[data-version='2']")
    v2.get_by_role("button", name="Make production").click()
    dialog = ui.page.locator("dialog#confirm")
    expect(dialog).to_contain_text(re.compile("from v1 to v2"))
    dialog.locator("#confirm-ok").click()
    expect(dialog).to_be_hidden()
    expect(ui.page.locator("#aliases tr[data-alias=production] td[data-version]")).to_have_text(
        "v2"
    )
    after = stack.http.post(f"/v1/models/{MODEL}/predict", json={"inputs": rows[:2]})
    assert after.status_code == 200, after.text
    assert after.json()["model_version"] == 2
    ui.assert_clean()
    assert ADMIN_KEY not in " ".join(ui.urls)


def test_the_event_stream_parser_takes_chunks_as_they_come(ui: Watched) -> None:
    """sse.js's parser, in the browser: lines split across chunks, CRLF, comments, retry,
    multi-line data, and an id that lasts until the next one."""
    ui.open()
    messages = ui.page.evaluate(
        r"""async () => {
            const { SSEParser } = await import("/ui/sse.js");
            const parser = new SSEParser();
            const chunks = ["retry: 1500\n\n: keep-alive\n\nid: 1-2\nevent: met", "rics\r\ndata: {\"a\"",
                ": 1}\r\n\r\ndata: x\ndata: y\n\nevent: end\ndata: {}\n", "\n"];
            const out = chunks.flatMap((c) => parser.feed(c));
            return { out, retry: parser.retry };
        }"""
    )
    assert messages == {
        "retry": 1500,
        "out": [
            {"event": "metrics", "data": '{"a": 1}', "id": "1-2"},
            {"event": "message", "data": "x\ny", "id": "1-2"},
            {"event": "end", "data": "{}", "id": "1-2"},
        ],
    }
    ui.assert_clean()


def test_an_api_error_is_shown_as_the_api_said_it(ui: Watched, stack: Stack) -> None:
    missing = "no-such-job"
    said = stack.http.get(f"/v1/jobs/{missing}").json()["error"]
    ui.open(f"#/jobs/{missing}")
    ui.sign_in()
    box = ui.page.locator("main .error")
    expect(box).to_contain_text(said["message"])
    expect(box).to_contain_text(f"404 {said['code']}")
    # The browser logs the 404 itself; nothing else may go wrong.
    assert all("404" in e for e in ui.errors), ui.errors
    assert [f for f in ui.failed if not f.startswith("404 ")] == [], ui.failed


def test_lists_are_read_as_pages_or_bare_arrays(ui: Watched) -> None:
    """GET /v1/models and /v1/keys answer bare arrays today and pages {items, next_cursor}
    soon: api.js reads both."""
    ui.open()
    got = ui.page.evaluate(
        """async () => {
            const { itemsOf, nextCursorOf } = await import("/ui/api.js");
            const page = { items: [{ name: "a" }], next_cursor: "c1" };
            return [itemsOf([{ name: "a" }]), itemsOf(page), itemsOf(null),
                    nextCursorOf([1]), nextCursorOf(page)];
        }"""
    )
    assert got == [[{"name": "a"}], [{"name": "a"}], [], None, "c1"]
    ui.assert_clean()
