"""The Open Inference Protocol (KServe V2), called with a standard client (tritonclient)
unchanged, against `trainserve up`, on a model trained there."""

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.support import held_out_digits, seed_spec


@pytest.fixture(scope="module")
def served(embedded_stack):  # type: ignore[no-untyped-def]
    api = embedded_stack.api()
    job = api.wait_job(api.submit(seed_spec("v2-digits", epochs=5))["id"])
    assert job["status"] == "succeeded", embedded_stack.logs()
    url = embedded_stack.base_url.removeprefix("http://")
    client = httpclient.InferenceServerClient(url=url)
    headers = {"Authorization": f"Bearer {embedded_stack.key}"}
    yield client, headers
    client.close()


def test_health_and_readiness(served) -> None:  # type: ignore[no-untyped-def]
    client, headers = served
    assert client.is_server_live(headers=headers) and client.is_server_ready(headers=headers)
    assert client.is_model_ready("v2-digits", headers=headers)
    assert client.is_model_ready("v2-digits", model_version="1", headers=headers)
    assert not client.is_model_ready("no-such-model", headers=headers)


def test_model_metadata_describes_the_tensors(served) -> None:  # type: ignore[no-untyped-def]
    client, headers = served
    meta = client.get_model_metadata("v2-digits", headers=headers)
    assert (
        meta["name"] == "v2-digits" and meta["versions"] == ["1"] and meta["platform"] == "pytorch"
    )
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}]
    assert {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]} in meta["outputs"]


def test_infer_matches_the_v1_predict(served, embedded_stack) -> None:  # type: ignore[no-untyped-def]
    client, headers = served
    rows, _ = held_out_digits()
    x = np.asarray(rows[:20], dtype=np.float32)
    tensor = httpclient.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    wanted = [
        httpclient.InferRequestedOutput("predictions"),
        httpclient.InferRequestedOutput("probabilities"),
    ]
    result = client.infer("v2-digits", [tensor], outputs=wanted, headers=headers, request_id="r1")
    probabilities = result.as_numpy("probabilities")
    predictions = [int(p) for p in result.as_numpy("predictions")]
    assert probabilities.shape == (20, 10) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-4)
    v1 = embedded_stack.api().predict("v2-digits", rows[:20]).json()
    assert predictions == v1["predictions"]
    assert np.allclose(probabilities, np.asarray(v1["probabilities"]), atol=1e-6)
    assert result.get_response()["id"] == "r1" and result.get_response()["model_version"] == "1"
    int64 = httpclient.InferInput("input", list(x.shape), "INT64")
    int64.set_data_from_numpy(x.astype(np.int64))
    assert client.infer("v2-digits", [int64], headers=headers).as_numpy("probabilities").shape == (
        20,
        10,
    )


def test_errors_use_the_protocol_shape(served, embedded_stack) -> None:  # type: ignore[no-untyped-def]
    client, headers = served
    bad = httpclient.InferInput("input", [1, 3], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
    with pytest.raises(InferenceServerException, match="expected 64 features, got 3"):
        client.infer("v2-digits", [bad], headers=headers)
    with pytest.raises(InferenceServerException, match="no model named"):
        client.get_model_metadata("no-such-model", headers=headers)
    unauthenticated = httpx.get(f"{embedded_stack.base_url}/v2/health/live")
    assert unauthenticated.status_code == 401 and isinstance(unauthenticated.json()["error"], str)
    wrong_shape = httpx.post(
        f"{embedded_stack.base_url}/v2/models/v2-digits/infer",
        headers={"Authorization": f"Bearer {embedded_stack.key}"},
        json={"inputs": [{"name": "input", "shape": [2, 64], "datatype": "FP32", "data": [1.0]}]},
    )
    assert wrong_shape.status_code == 422 and "holds 128 values" in wrong_shape.json()["error"]
