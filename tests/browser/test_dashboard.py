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

    ui.go("#/nowhere")
    expect(ui.page.locator("main h1")).to_have_text("Not found")
    ui.assert_clean()


def test_a_running_jobs_curve_grows_until_it_succeeds(
    ui: Watched, stack: Stack, versions: list[dict[str, Any]]
) -> None:
    """The worker is paused (SIGSTOP) a few epochs in, so the page is seen mid-run however fast
    or loaded the machine is: it shows what is recorded so far, then grows to the end."""
    epochs = 12
    ui.open()
    ui.sign_in()
    expect(ui.page.locator("#jobs")).to_be_visible()
    job = stack.submit(small_spec(f"ui-live-{secrets.token_hex(3)}", epochs=epochs))
    ui.go(f"#/jobs/{job['id']}")
    chart = ui.page.locator("[data-chart=loss]")
    status = ui.page.locator("main h1 [data-status]")
    expect(chart).to_be_visible()
    wait_until(lambda: stack.job(job["id"])["progress"]["epoch"] >= 2, 90, "two epochs", 0.02)
    with stack.worker_paused():
        recorded = {p["epoch"] for p in stack.metrics(job["id"])}
        assert 2 <= len(recorded) < epochs, recorded
        expect(chart).to_have_attribute("data-points", str(len(recorded)))
        expect(chart.locator("polyline[data-series=train_loss]")).to_have_count(1)
        expect(status).to_have_text("running")
        expect(ui.page.locator("#cancel-job")).to_be_visible()
    expect(status).to_have_text("succeeded", timeout=90_000)
    expect(chart).to_have_attribute("data-points", str(epochs))
    expect(ui.page.locator("[data-report=validation] table.confusion")).to_be_visible()
    expect(ui.page.locator("#cancel-job")).to_have_count(0)
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
