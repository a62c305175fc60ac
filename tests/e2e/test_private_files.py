"""Nothing the service writes is readable by other users, whatever the umask it is started
under: `trainserve up`, started with the common default umask 022, uploads a dataset over
HTTP, trains on it and serves the model; then every file and folder under its data directory
(SQLite database, datasets, checkpoints, model bundles, broker messages, admin.key) is
checked for group and other permission bits."""

import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dataset_files import csv_bytes
from tests.e2e.conftest import Stack
from tests.support import BIN, Proc, base_env, free_port, seed_spec, unique_name, wait_http_ok


@pytest.fixture(scope="module")
def stack_umask_022(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("umask")
    port = free_port()
    command = f"umask 022 && exec {BIN} up --port {port} --workers 1"
    proc = Proc(["sh", "-c", command], base_env(), workdir / "up.log", cwd=workdir)
    stack = Stack(f"http://127.0.0.1:{port}", "", workdir / ".trainserve", base_env(), {"up": proc})
    try:
        wait_http_ok(f"{stack.base_url}/readyz", proc)
        match = re.search(r"admin API key \(shown once.*?\n\s+(ts_\S+)", proc.output())
        assert match, proc.output()
        stack.key = match.group(1)
        yield stack
    finally:
        proc.stop()


def shared(root: Path) -> list[str]:
    """Every path under root that its group or other users may read, write or enter."""
    found = []
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(folder) / name
            mode = stat.S_IMODE(path.lstat().st_mode)
            if mode & 0o077:
                found.append(f"{oct(mode)} {path.relative_to(root)}")
    return found


def test_datasets_checkpoints_models_and_the_database_are_private(
    stack_umask_022: Stack,
) -> None:
    api = stack_umask_022.api()
    rows = 40
    data = csv_bytes(
        {
            "a": list(range(rows)),
            "b": [i % 3 for i in range(rows)],
            "y": [i % 2 for i in range(rows)],
        }
    )
    upload = api.http.post(
        "/v1/datasets",
        files={"file": ("d.csv", data)},
        data={"name": unique_name("private"), "format": "csv", "target": "y"},
    )
    assert upload.status_code == 201, upload.text
    spec = {**seed_spec("private", epochs=2), "dataset": {"id": upload.json()["id"]}}
    job = api.wait_job(api.submit(spec)["id"])
    assert job["status"] == "succeeded", stack_umask_022.logs()
    assert api.predict("private", [[1, 2]]).status_code == 200
    root = stack_umask_022.data_dir
    made = {p.relative_to(root).parts[0] for p in root.rglob("*")}
    assert {"trainserve.db", "admin.key", "artifacts"} <= made, made
    assert list(root.glob("artifacts/datasets/*/data.npz"))
    assert list(root.glob("artifacts/jobs/*/**/*.safetensors"))
    exposed = shared(root)
    assert not exposed, "\n".join(exposed)
    assert stat.S_IMODE(root.stat().st_mode) & 0o077 == 0
