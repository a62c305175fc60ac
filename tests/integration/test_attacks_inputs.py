"""Inputs small on the wire and huge in memory, sent to a real `trainserve api` process (on the
test PostgreSQL and Redis): each is refused at once, /healthz keeps answering meanwhile, and
the process's peak memory (VmHWM, reset before each attack) barely moves."""

import base64
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from app.core.config import get_settings
from app.core.db import session_scope
from app.ml.bundle import ModelBundle
from app.ml.images import ChannelStats
from app.ml.preprocessing import Preprocessor
from app.ml.zoo import build_model
from app.models import Job, JobStatus
from app.services import registry
from tests.integration.conftest import ADMIN_KEY
from tests.npz_files import member, npy_bytes, zeros_member, zip_of
from tests.support import (
    BIN,
    Proc,
    base_env,
    fixed_model,
    free_port,
    seed_spec,
    unique_name,
    wait_http_ok,
)

MAX_DATASET_BYTES = 1_000_000
# What handling a refused request may add to the process's peak memory: the old code grew by
# 1.4 GB on the smallest of these. An 8 MB body itself is held a few times over on its way
# in (uvicorn's buffer, Starlette's chunks and their join, the checks' copies).
MAX_GROWTH = 128 * 1024 * 1024
MAX_HEALTHZ_S = 0.5
MAX_RESPONSE_S = 2.0  # the old code took 23 s to refuse the 90-byte body


@dataclass
class Served:
    url: str
    proc: Proc
    predict_key: str

    def post(
        self,
        path: str,
        key: str | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key or self.predict_key}", **(headers or {})}
        if "content" in kwargs:
            headers.setdefault("Content-Type", "application/json")
        return httpx.post(f"{self.url}{path}", headers=headers, timeout=120, **kwargs)


@pytest.fixture(scope="module")
def served(
    configured: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    port = free_port()
    env = base_env() | configured | {"TRAINSERVE_MAX_DATASET_BYTES": str(MAX_DATASET_BYTES)}
    log = tmp_path_factory.mktemp("attacks") / "api.log"
    proc = Proc([str(BIN), "api", "--port", str(port)], env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http_ok(f"{url}/readyz", proc)
        created = httpx.post(
            f"{url}/v1/keys",
            json={"name": "attacker", "scopes": ["predict"]},
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        )
        assert created.status_code == 201, created.text
        yield Served(url, proc, created.json()["key"])
    finally:
        proc.stop()


@dataclass
class Attack:
    responses: list[httpx.Response]
    slowest_healthz_s: float
    peak_growth: int


def under_attack(served: Served, send: Callable[[], httpx.Response], seconds: float) -> Attack:
    """send() again and again for `seconds` on a thread, /healthz polled meanwhile."""
    pid = served.proc.popen.pid
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := the RSS now
    before = _status_kb(pid, "VmHWM")
    responses: list[httpx.Response] = []
    failures: list[BaseException] = []

    def attack() -> None:
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                responses.append(send())
        except BaseException as exc:  # raised again below, on the test's thread
            failures.append(exc)

    thread = threading.Thread(target=attack)
    thread.start()
    slowest = 0.0
    with httpx.Client(timeout=120) as client:
        while thread.is_alive():
            started = time.perf_counter()
            assert client.get(f"{served.url}/healthz").status_code == 200
            slowest = max(slowest, time.perf_counter() - started)
            time.sleep(0.01)
    thread.join()
    if failures:
        raise failures[0]
    return Attack(responses, slowest, (_status_kb(pid, "VmHWM") - before) * 1024)


def encoded(body: object) -> bytes:
    """Encoded once, before the attack: the test's own JSON encoding would hold its GIL, and
    the /healthz poller with it."""
    return json.dumps(body).encode()


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def assert_withstood(attack: Attack, status: int) -> None:
    assert attack.responses, "no response came back"
    assert {r.status_code for r in attack.responses} == {status}, attack.responses[0].text
    assert max(r.elapsed.total_seconds() for r in attack.responses) < MAX_RESPONSE_S
    assert attack.slowest_healthz_s < MAX_HEALTHZ_S, attack
    assert attack.peak_growth < MAX_GROWTH, attack


# --- V2 infer: rows claimed by the shape ----------------------------------------------------


@pytest.mark.parametrize("shape", [[20_000_000, 0], [10**12, 0]])
def test_an_infer_body_of_90_bytes_claiming_millions_of_rows_is_413_at_once(
    served: Served, shape: list[int]
) -> None:
    """Any predict key, and the model need not exist."""
    body = encoded({"inputs": [{"name": "x", "shape": shape, "datatype": "FP32", "data": []}]})
    assert len(body) < 100
    attack = under_attack(
        served, lambda: served.post("/v2/models/no-such-model/infer", content=body), 1.0
    )
    assert_withstood(attack, 413)
    error = attack.responses[0].json()["error"]
    assert "TRAINSERVE_MAX_PREDICT_ROWS" in error


def test_binary_infer_data_claiming_a_billion_rows_is_413_at_once(served: Served) -> None:
    fixed_model("attack-binary", get_settings().data_dir)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [10**9, 2],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 8},
                }
            ]
        }
    ).encode()
    attack = under_attack(
        served,
        lambda: served.post(
            "/v2/models/attack-binary/infer",
            content=header + b"\0" * 8,
            headers={"Inference-Header-Content-Length": str(len(header))},
        ),
        0.5,
    )
    assert_withstood(attack, 413)


LIST_BOMB = "[" + ",".join(["[0]"] * 1_900_000) + "]"  # 7.6 MB: 1.9 M lists, ~400 MB parsed


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/v2/models/attack-wide/infer",
            '{"inputs":[{"name":"x","shape":[4096,2],"datatype":"FP32","data":' + LIST_BOMB + "}]}",
        ),
        ("/v1/models/attack-wide/predict", '{"inputs":' + LIST_BOMB + "}"),
    ],
    ids=["v2", "v1"],
)
def test_a_body_of_millions_of_tiny_lists_is_413_before_it_is_parsed(
    served: Served, path: str, body: str
) -> None:
    """Parsing them holds the GIL for seconds, on whichever thread: counted first, in C."""
    fixed_model("attack-wide", get_settings().data_dir)
    data = body.encode()
    attack = under_attack(served, lambda: served.post(path, content=data), 0.5)
    assert_withstood(attack, 413)
    assert "TRAINSERVE_MAX_PREDICT_ROWS" in attack.responses[0].text


def test_a_body_of_megabytes_within_the_limits_is_parsed_off_the_event_loop(
    served: Served,
) -> None:
    """4,096 rows of 120 values (2 MB): refused by decode (the model takes 2), parsed on a
    thread. (orjson itself holds the GIL while it parses: ~0.1 s here, ~0.4 s at 8 MB.)"""
    fixed_model("attack-flat", get_settings().data_dir)
    body = encoded({"inputs": [[0.5] * 120] * 4096})
    attack = under_attack(
        served, lambda: served.post("/v1/models/attack-flat/predict", content=body), 1.0
    )
    assert {r.status_code for r in attack.responses} == {422}
    assert "expected 2 features, got 120" in attack.responses[0].text
    # parsed, the floats take ~10x the body: a cost of JSON that max_request_bytes bounds
    assert attack.slowest_healthz_s < MAX_HEALTHZ_S, attack


@pytest.mark.parametrize(
    "size", ["abc", [1], True, -1, 1.5, 10**6], ids=["str", "list", "bool", "neg", "float", "big"]
)
def test_a_binary_data_size_that_is_not_a_byte_count_is_a_4xx(served: Served, size: object) -> None:
    fixed_model("attack-size", get_settings().data_dir)
    tensor = {"name": "x", "shape": [1, 2], "datatype": "FP32"}
    header = json.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": size}}]}).encode()
    response = served.post(
        "/v2/models/attack-size/infer",
        content=header + np.zeros(2, np.float32).tobytes(),
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 422, response.text
    assert "binary_data_size must be a whole number of bytes" in response.json()["error"]


def test_an_inference_header_length_of_non_ascii_digits_is_a_4xx(served: Served) -> None:
    response = served.post(
        "/v2/models/attack-size/infer",
        content=b'{"inputs": []}',
        # the server reads header bytes as latin-1: b"\xb2" is '²', and '²'.isdigit() is True
        headers={"Inference-Header-Content-Length": b"\xb2"},  # type: ignore[dict-item]
    )
    assert response.status_code == 422, response.text


# --- image predict: pixels claimed by the headers -------------------------------------------


def fixed_image_model(name: str, data_dir: Path) -> None:
    """An mlp over flattened 1x8x8 images, registered as a worker would."""
    pre = Preprocessor(
        "image", [1, 8, 8], channels=ChannelStats(torch.zeros(1), torch.ones(1)), flatten=True
    )
    options = {"hidden": [4], "dropout": 0.0}
    model = build_model("mlp", [64], 2, options)
    bundle = ModelBundle("mlp", options, "classification", 2, ["a", "b"], pre, None, model)
    with session_scope() as session:
        job = Job(
            model_name=name,
            project="default",
            spec=seed_spec(name),
            status=JobStatus.succeeded,
            progress={},
            metrics={},
        )
        session.add(job)
        session.flush()
        rel = f"jobs/{job.id}/model.safetensors"
        registry.register_version(
            session,
            model_name=name,
            project="default",
            job_id=job.id,
            task="classification",
            spec=job.spec,
            dataset={"kind": "image"},
            metrics={},
            classes=["a", "b"],
            input_shape=[1, 8, 8],
            checkpoint_path=rel,
            checkpoint_sha256=bundle.save(data_dir / "artifacts" / rel),
        )


def png_base64(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("L", (width, height), 7).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_tiny_pngs_of_81_m_pixels_are_413_before_they_are_decoded(served: Served) -> None:
    """The finding: 24 base64 9000x9000 PNGs in 8 MB cost 20 s of CPU and 1.4 GB."""
    fixed_image_model("attack-pixels", get_settings().data_dir)
    small = png_base64(8, 8)
    assert served.post("/v1/models/attack-pixels/predict", json={"inputs": [small]}).is_success
    body = encoded({"inputs": [png_base64(9000, 9000)] * 3})
    assert len(body) < 400_000
    attack = under_attack(
        served, lambda: served.post("/v1/models/attack-pixels/predict", content=body), 1.0
    )
    assert_withstood(attack, 413)
    error = attack.responses[0].json()["error"]
    assert (
        error["code"] == "too_many_pixels" and "TRAINSERVE_MAX_PREDICT_PIXELS" in error["message"]
    )


# --- npz uploads: members and sizes claimed by the archive ----------------------------------


def upload(served: Served, data: bytes, name: str) -> httpx.Response:
    return served.post(
        "/v1/datasets",
        key=ADMIN_KEY,
        files={"file": (f"{name}.npz", data)},
        data={"name": unique_name(name), "format": "npz"},
    )


def test_an_npz_hiding_an_80_mb_x_behind_a_small_x_npy_is_refused(served: Served) -> None:
    """The finding: accepted under MAX_DATASET_BYTES=1e6, np.load having read 'X'."""
    rows = 20_480
    data = zip_of(
        zeros_member("X", (rows, 1024)),
        member("X.npy", npy_bytes(np.zeros((rows, 1), np.float32))),
        member("y.npy", npy_bytes((np.arange(rows) % 2).astype(np.int8))),
    )
    assert len(data) < 200_000
    attack = under_attack(served, lambda: upload(served, data, "hidden"), 0.5)
    assert_withstood(attack, 422)
    assert "unexpected member 'X'" in attack.responses[0].json()["error"]["message"]


def test_an_npz_of_1_mb_inflating_to_1_gib_is_refused_quickly(served: Served) -> None:
    """The finding: a 500 with the API at 2.5 GB. Hidden as 'X', or honest as X.npy."""
    y = member("y.npy", npy_bytes(np.zeros(16_384, np.int8)))
    hidden = zip_of(
        zeros_member("X", (16_384, 16_384)), member("X.npy", npy_bytes(np.zeros((2, 2)))), y
    )
    honest = zip_of(zeros_member("X.npy", (16_384, 16_384)), y)
    assert len(hidden) < 1_200_000 and len(honest) < 1_200_000
    attack = under_attack(served, lambda: upload(served, hidden, "gib-hidden"), 0.5)
    assert_withstood(attack, 422)
    attack = under_attack(served, lambda: upload(served, honest, "gib"), 0.5)
    assert_withstood(attack, 413)
    error = attack.responses[0].json()["error"]
    assert "TRAINSERVE_MAX_DATASET_BYTES" in error["message"]
