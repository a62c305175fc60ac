"""The CLI's client commands (jobs, datasets, models, keys) against a real API and worker: what
they print, their exit codes, --output json against the API's own answers, the errors a user
meets, and the defaults read from a data dir."""

import json
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.dataset_files import csv_bytes
from tests.e2e.conftest import CliStack
from tests.support import BIN, Proc, base_env, free_port, seed_spec, wait_http_ok, wait_until

MODEL = "cli-digits"
ZERO_DIGIT = [[0.0] * 64]


def short_spec(name: str = MODEL, epochs: int = 2) -> dict[str, Any]:
    spec = seed_spec(name, epochs=epochs)
    spec["model"]["hidden"] = [16]
    return spec


def write_spec(folder: Path, spec: dict[str, Any]) -> Path:
    path = folder / f"spec-{secrets.token_hex(3)}.json"
    path.write_text(json.dumps(spec))
    return path


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr
    return done.stdout


def failed(done: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert done.returncode == code, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr + done.stdout
    return done.stderr


def api_get(stack: CliStack, path: str) -> Any:
    response = httpx.get(
        f"{stack.url}{path}", headers={"Authorization": f"Bearer {stack.key}"}, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def followed(cli_stack: CliStack) -> tuple[str, str]:
    """`jobs submit SPEC --follow` of a short job: its id and what it printed (not a terminal)."""
    done = cli_stack.run("jobs", "submit", str(write_spec(cli_stack.workdir, short_spec())), "-f")
    out = ok(done)
    match = re.search(r"job ([0-9a-f-]{36}) succeeded", out)
    assert match, out
    return match[1], out


@pytest.fixture(scope="module")
def second_job(cli_stack: CliStack, followed: tuple[str, str]) -> str:
    """The model's second version, submitted once the first is done (the id alone on stdout):
    it trains while the tests that need only the first run."""
    spec = write_spec(cli_stack.workdir, short_spec())
    return ok(cli_stack.run("jobs", "submit", str(spec))).strip()


@pytest.fixture(scope="module")
def two_versions(cli_stack: CliStack, second_job: str) -> None:
    assert ok(cli_stack.run("jobs", "wait", second_job, "--timeout", "120"))


def test_submit_follow_prints_each_epoch_and_exits_0_on_success(followed: tuple[str, str]) -> None:
    _, out = followed
    assert re.search(r"running: ", out), out
    for epoch in (1, 2):
        assert re.search(rf"epoch {epoch}  step \d+  .*loss [\d.]+", out), out
    assert "val_f1[0]" not in out  # per-class metrics are for `jobs show -o json`
    assert f"model {MODEL} version 1" in out


def test_json_output_is_the_apis_json(
    cli_stack: CliStack, followed: tuple[str, str], second_job: str
) -> None:
    job_id, _ = followed
    shown = json.loads(ok(cli_stack.run("jobs", "show", job_id, "-o", "json")))
    assert shown == api_get(cli_stack, f"/v1/jobs/{job_id}")
    listed = json.loads(ok(cli_stack.run("jobs", "list", "--output", "json", "--limit", "200")))
    mine = [job for job in listed if job["id"] == job_id]  # the second job is still changing
    assert mine == [
        j for j in api_get(cli_stack, "/v1/jobs?limit=200")["items"] if j["id"] == job_id
    ]
    assert listed[0]["id"] == second_job  # newest first
    model = json.loads(ok(cli_stack.run("models", "show", MODEL, "-o", "json")))
    assert model == api_get(cli_stack, f"/v1/models/{MODEL}")
    version = json.loads(ok(cli_stack.run("models", "show", MODEL, "--version", "1", "-o", "json")))
    assert version == api_get(cli_stack, f"/v1/models/{MODEL}/versions/1")


def test_jobs_list_show_and_events(cli_stack: CliStack, followed: tuple[str, str]) -> None:
    job_id, _ = followed
    rows = ok(cli_stack.run("jobs", "list", "--status", "succeeded")).splitlines()
    assert rows[0].split()[:3] == ["ID", "MODEL", "STATUS"]
    assert any(r.split()[:3] == [job_id, MODEL, "succeeded"] for r in rows), rows
    assert job_id not in ok(cli_stack.run("jobs", "list", "--status", "failed"))
    shown = ok(cli_stack.run("jobs", "show", job_id))
    assert "status: succeeded" in shown and "epoch: 2/2" in shown and "checkpoint" in shown
    events = ok(cli_stack.run("jobs", "events", job_id)).splitlines()
    assert any(re.match(r"epoch 2  step \d+  train_loss", line) for line in events), events
    assert events[-1] == "job ended: succeeded: registered cli-digits version 1 (model version 1)"
    lines = [
        json.loads(line)
        for line in ok(cli_stack.run("jobs", "events", job_id, "-o", "json")).splitlines()
    ]
    assert lines[-1] == {
        "id": None,
        "event": "end",
        "data": {
            "status": "succeeded",
            "status_message": f"registered {MODEL} version 1",
            "model_version": 1,
        },
    }
    assert {e["event"] for e in lines} == {"status", "event", "metrics", "end"}


def test_cancel_a_queued_job_and_a_wait_on_it_exits_3(cli_stack: CliStack) -> None:
    spec = write_spec(cli_stack.workdir, short_spec("cli-cancelled", epochs=300))
    job_id = ok(cli_stack.run("jobs", "submit", str(spec))).strip()
    assert ok(cli_stack.run("jobs", "cancel", job_id)).startswith(f"cancel requested: job {job_id}")
    waited = cli_stack.run("jobs", "wait", job_id, "--timeout", "60")
    failed(waited, 3)
    assert f"job {job_id} cancelled" in waited.stdout
    followed = cli_stack.run("jobs", "follow", job_id, "-o", "json")
    failed(followed, 3)
    assert json.loads(followed.stdout)["status"] == "cancelled"


def test_submit_reads_stdin_and_refuses_an_invalid_spec_with_its_field(cli_stack: CliStack) -> None:
    spec = short_spec("cli-invalid")
    spec["training"]["optimizer"]["lr"] = -1
    spec["training"]["batch_size"] = 0
    err = failed(cli_stack.run("jobs", "submit", "-", input=json.dumps(spec)))
    first, *details = err.splitlines()
    assert first.startswith("error: validation_error: training."), err
    fields = sorted(line.split(":")[0] for line in details)  # each field named, a line each
    assert fields == ["  training.batch_size", "  training.optimizer.lr"], err
    usage = failed(cli_stack.run("jobs", "submit", "-", input="{not json"), 2)
    assert "not JSON" in usage


def test_datasets_upload_list_show(cli_stack: CliStack, tmp_path: Path) -> None:
    csv = tmp_path / "points.csv"
    csv.write_bytes(csv_bytes({"x": [0.1, 0.9, 0.2, 0.8] * 4, "label": ["a", "b", "a", "b"] * 4}))
    name = f"points-{secrets.token_hex(3)}"
    dataset_id = ok(
        cli_stack.run(
            "datasets", "upload", str(csv), "--name", name, "--format", "csv", "--target", "label"
        )
    ).strip()
    rows = ok(cli_stack.run("datasets", "list")).splitlines()
    assert any(r.split()[:3] == [dataset_id, name, "csv"] for r in rows), rows
    assert f"name: {name}" in ok(cli_stack.run("datasets", "show", dataset_id))
    shown = json.loads(ok(cli_stack.run("datasets", "show", dataset_id, "-o", "json")))
    assert shown == api_get(cli_stack, f"/v1/datasets/{dataset_id}")
    listed = json.loads(ok(cli_stack.run("datasets", "list", "-o", "json")))
    assert shown in listed


def test_models_list_show_alias_and_predict(
    cli_stack: CliStack, two_versions: None, tmp_path: Path
) -> None:
    rows = ok(cli_stack.run("models", "list")).splitlines()
    assert any(r.split()[:3] == [MODEL, "default", "2"] for r in rows), rows

    def answered_by(*ref: str) -> int:
        out = json.loads(
            ok(
                cli_stack.run(
                    "models", "predict", MODEL, json.dumps(ZERO_DIGIT), *ref, "-o", "json"
                )
            )
        )
        assert len(out["predictions"]) == 1 and len(out["probabilities"][0]) == 10
        return int(out["model_version"])

    assert answered_by() == 2  # the latest, no production alias yet
    assert (
        ok(cli_stack.run("models", "alias", MODEL, "production", "1")).strip()
        == f"{MODEL}: production → version 1"
    )
    assert answered_by() == 1
    assert answered_by("--version", "2") == 2
    assert answered_by("--version", "production") == 1
    shown = ok(cli_stack.run("models", "show", MODEL))
    assert "aliases: production → 1" in shown
    assert "version: 1\n" in ok(cli_stack.run("models", "show", MODEL, "--version", "production"))
    ok(cli_stack.run("models", "alias", MODEL, "production", "--delete"))
    assert answered_by() == 2

    rows_file = tmp_path / "rows.json"
    rows_file.write_text(json.dumps({"inputs": ZERO_DIGIT * 3}))
    text = ok(cli_stack.run("models", "predict", MODEL, f"@{rows_file}"))
    assert text.splitlines()[0] == f"model {MODEL} version 2"
    assert [line.split()[0] for line in text.splitlines()[2:]] == ["0", "1", "2"]
    piped = json.loads(
        ok(
            cli_stack.run(
                "models", "predict", MODEL, "-", "-o", "json", input=json.dumps(ZERO_DIGIT)
            )
        )
    )
    assert piped["model_version"] == 2
    assert failed(
        cli_stack.run("models", "alias", MODEL, "production"), 2
    )  # neither VERSION nor --delete


def test_keys_create_without_a_name_list_and_revoke(
    cli_stack: CliStack, two_versions: None
) -> None:
    key = ok(cli_stack.run("keys", "create", "--scope", "predict")).strip()
    assert re.fullmatch(r"ts_\S+", key), key  # the secret alone: KEY=$(trainserve keys create ...)
    listed = json.loads(ok(cli_stack.run("keys", "list", "-o", "json")))
    mine = [k for k in listed if key.startswith(k["prefix"])]
    assert (
        len(mine) == 1 and mine[0]["scopes"] == ["predict"] and mine[0]["name"] == "default predict"
    )
    assert listed == api_get(cli_stack, "/v1/keys?limit=200")["items"]
    line = next(
        line
        for line in ok(cli_stack.run("keys", "list")).splitlines()
        if line.startswith(mine[0]["id"])
    )
    assert "(active)" in line and key not in line

    predict = ("models", "predict", MODEL, json.dumps(ZERO_DIGIT), "--key", key)
    ok(cli_stack.run(*predict))
    denied = failed(cli_stack.run("jobs", "list", "--key", key))
    assert denied.startswith("error: insufficient_scope: "), denied
    assert ok(cli_stack.run("keys", "revoke", mine[0]["id"])).strip() == f"revoked {mine[0]['id']}"
    err = failed(cli_stack.run(*predict))
    assert err.startswith("error: invalid_key: ") and "--key" in err, err


def test_workers_list_shows_the_worker_and_its_pool(cli_stack: CliStack) -> None:
    listed = json.loads(ok(cli_stack.run("workers", "list", "-o", "json")))
    # ids only: a heartbeat or a claim between the two reads moves last_seen and running
    assert [w["id"] for w in listed] == [
        w["id"] for w in api_get(cli_stack, "/v1/workers?limit=200")["items"]
    ]
    assert [(w["pool"], w["state"]) for w in listed] == [("default", "live")]
    line = ok(cli_stack.run("workers", "list", "--pool", "default")).splitlines()[1]
    assert line.startswith(listed[0]["id"]) and " default " in line and " live " in line


def test_keys_database_path_needs_no_api(cli_stack: CliStack) -> None:
    # The server's settings, and an API URL where nothing listens: --database must not use it.
    env = cli_stack.server_env | {"TRAINSERVE_URL": f"http://127.0.0.1:{free_port()}"}
    made = json.loads(
        ok(cli_stack.spawn("keys", "create", "--database", "--name", "ops", "-o", "json", env=env))
    )
    assert made["name"] == "ops" and made["key"].startswith("ts_") and made["scopes"] == ["admin"]
    assert made["id"] in ok(cli_stack.spawn("keys", "list", "--database", env=env))
    ok(cli_stack.run("jobs", "list", "--key", made["key"]))  # the key works on the API at once
    assert ok(cli_stack.spawn("keys", "revoke", "--database", made["id"], env=env)).startswith(
        "revoked"
    )
    assert failed(cli_stack.run("jobs", "list", "--key", made["key"])).startswith(
        "error: invalid_key"
    )


def test_errors_are_one_line_and_an_exit_code(cli_stack: CliStack) -> None:
    err = failed(cli_stack.spawn("jobs", "list", "--key", "ts_wrong"))
    assert err.startswith("error: invalid_key: the API key is not valid"), err
    assert "--key or TRAINSERVE_KEY" in err
    err = failed(cli_stack.run("jobs", "show", "00000000-0000-0000-0000-000000000000"))
    assert err.startswith("error: not_found: "), err

    nowhere = f"http://127.0.0.1:{free_port()}"
    err = failed(cli_stack.spawn("jobs", "list", "--url", nowhere))
    assert err.startswith(f"error: cannot reach the API at {nowhere} (--url or TRAINSERVE_URL)"), (
        err
    )
    assert "trainserve up" in err and "--database" not in err
    err = failed(cli_stack.run("keys", "list", "--url", nowhere))
    assert "--database" in err, err


def test_defaults_come_from_the_data_dir(
    cli_stack: CliStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `trainserve api` wrote where it listens in its data dir.
    data_dir = Path(cli_stack.server_env["TRAINSERVE_DATA_DIR"])
    assert (data_dir / "api.url").read_text().strip() == cli_stack.url
    # A data dir named by TRAINSERVE_DATA_DIR, and ./.trainserve of the working directory.
    monkeypatch.chdir(tmp_path)
    unset: dict[str, str | None] = {"TRAINSERVE_URL": None, "TRAINSERVE_KEY": None}
    for folder, data_dir in (
        (tmp_path / "named", str(tmp_path / "named")),
        (tmp_path / ".trainserve", None),
    ):
        folder.mkdir()
        (folder / "api.url").write_text(cli_stack.url + "\n")
        (folder / "admin.key").write_text(cli_stack.key + "\n")
        ok(cli_stack.run("jobs", "list", env=unset | {"TRAINSERVE_DATA_DIR": data_dir}))
    gone = tmp_path / "stale"
    gone.mkdir()
    stale = f"http://127.0.0.1:{free_port()}"
    (gone / "api.url").write_text(stale)
    err = failed(cli_stack.run("jobs", "list", env=unset | {"TRAINSERVE_DATA_DIR": str(gone)}))
    assert f"{stale} (read from {gone / 'api.url'})" in err, err


def test_up_writes_api_url_while_it_listens(tmp_path: Path) -> None:
    port = free_port()
    up = Proc(
        [str(BIN), "up", "--port", str(port), "--workers", "0"],
        base_env(),
        tmp_path / "up.log",
        cwd=tmp_path,
    )
    url_file = tmp_path / ".trainserve" / "api.url"
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/readyz", up)
        assert url_file.read_text().strip() == f"http://127.0.0.1:{port}"
        # The client's defaults: this api.url and the admin.key `up` made.
        done = subprocess.run(
            [str(BIN), "models", "list", "-o", "json"],
            env=base_env(),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0 and json.loads(done.stdout) == [], done.stderr
    finally:
        up.stop()
    wait_until(lambda: not url_file.exists(), 10, "api.url to be removed")


def test_client_commands_do_not_import_torch(cli_stack: CliStack) -> None:
    target = ["--url", cli_stack.url, "--key", cli_stack.key, "-o", "json"]
    code = (
        "import sys\n"
        "from app.cli import main\n"
        f"for args in (['jobs', 'list'], ['models', 'list'], ['keys', 'list']):\n"
        f"    main([*args, *{target!r}], standalone_mode=False)\n"
        "heavy = {'torch', 'fastapi', 'sqlalchemy', 'celery', 'uvicorn'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=base_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
