"""The client's pure parts, without a server: what an error answer becomes, when a call is
sent again, how Server-Sent Events are read, and how paths are built."""

import httpx
import pytest
from trainserve_client import (
    AuthError,
    ConflictError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    TrainserveError,
    ValidationError,
    _calls,
)
from trainserve_client._http import Retry, form_fields
from trainserve_client._sse import Decoder, JobEventStream, Message
from trainserve_client.errors import error_from_response


def answer(status: int, body: object = None, **headers: str) -> httpx.Response:
    if body is None:
        body = {"error": {"code": "some_code", "message": "said so", "details": {"a": 1}}}
    return httpx.Response(status, json=body, headers=headers)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, ValidationError),
        (401, AuthError),
        (403, AuthError),
        (404, NotFoundError),
        (409, ConflictError),
        (413, ValidationError),
        (422, ValidationError),
        (429, RateLimitedError),
        (500, ServerError),
        (503, ServerError),
        (507, ServerError),
        (418, TrainserveError),
    ],
)
def test_each_status_has_its_class(status: int, cls: type[TrainserveError]) -> None:
    error = error_from_response(answer(status))
    assert type(error) is cls
    assert (error.status, error.code, error.message, error.details) == (
        status,
        "some_code",
        "said so",
        {"a": 1},
    )


def test_retry_after_is_read_in_seconds_or_as_a_date() -> None:
    assert error_from_response(answer(429, **{"Retry-After": "3"})).retry_after == 3.0
    dated = answer(503, **{"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert error_from_response(dated).retry_after == 0.0  # in the past: now
    assert error_from_response(answer(429)).retry_after is None


def test_a_body_not_in_the_apis_shape_still_makes_an_error() -> None:
    proxy = httpx.Response(502, text="<html>bad gateway</html>")
    error = error_from_response(proxy)
    assert (type(error), error.code, error.message) == (ServerError, "http_502", proxy.text)
    v2 = error_from_response(answer(400, {"error": "unknown model"}))
    assert (v2.code, v2.message) == ("http_400", "unknown model")


def test_only_transport_errors_and_503s_are_sent_again() -> None:
    retry = Retry(retries=2, base_s=0.1, max_s=1.0)
    assert 0.05 <= (retry.delay(1) or 0) <= 0.1
    assert 0.1 <= (retry.delay(2) or 0) <= 0.2
    assert retry.delay(3) is None  # two retries, then the error is the caller's
    assert retry.delay(1, answer(503, **{"Retry-After": "0.5"})) == 0.5
    assert retry.delay(1, answer(503, **{"Retry-After": "60"})) == 1.0  # capped
    for status in (200, 409, 429, 500):
        assert retry.delay(1, answer(status)) is None


def test_submit_always_carries_an_idempotency_key() -> None:
    first, second = _calls.submit_job({}, None), _calls.submit_job({}, None)
    assert first.headers["Idempotency-Key"] != second.headers["Idempotency-Key"]
    assert _calls.submit_job({}, "mine").headers["Idempotency-Key"] == "mine"
    assert first.retry and not _calls.cancel_job("j").retry


def test_a_name_stays_one_path_segment() -> None:
    assert _calls.get_model("a/../b").path == "/v1/models/a%2F..%2Fb"
    assert _calls.predict("m", [], "production").path == "/v1/models/m/versions/production/predict"
    assert _calls.predict("m", [], None).path == "/v1/models/m/predict"
    assert _calls.generate("m", "hi", 3, False, {}).json["version"] == "3"


def test_form_fields_are_strings() -> None:
    assert form_fields({"a": None, "b": True, "c": 32, "d": "x"}) == {
        "b": "true",
        "c": "32",
        "d": "x",
    }


def feed(decoder: Decoder, text: str) -> list[Message]:
    return [m for line in text.split("\n") if (m := decoder.feed(line)) is not None]


def test_server_sent_events_are_read_by_the_rules() -> None:
    text = 'retry: 1000\n\n: keep-alive\n\nid: 1-0\nevent: status\ndata: {"a":\ndata: 1}\n\n'
    decoder = Decoder()
    assert feed(decoder, text) == [Message("status", '{"a":\n1}', "1-0")]
    assert decoder.retry_ms == 1000
    assert feed(decoder, "data: x\n\n") == [Message("message", "x", None)]


def test_a_message_cut_short_does_not_move_the_resume_point() -> None:
    stream = JobEventStream("job", None, Retry())
    stream.call()
    for line in ["id: 1-0", "event: status", 'data: {"status": "queued"}', "", "id: 2-0"]:
        stream.feed(line)
    assert stream.last_event_id == "1-0"
    assert stream.call().headers["Last-Event-ID"] == "1-0"
    assert stream.feed("event: end") is None and stream.feed("") is None  # the old half is gone
    assert not stream.ended
