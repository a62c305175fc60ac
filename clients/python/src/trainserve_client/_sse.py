"""Server-Sent Events, read line by line (both clients feed lines in; neither parses), and a
job's event stream across reconnects.

The decoder follows the WHATWG EventSource rules that matter here: a blank line ends a
message, `data` lines join with newlines, `:` starts a comment, and a message's id counts
only once the message is whole. So a connection cut in the middle of a message leaves the
resume point before it, and the server sends it again whole.
"""

import json
from dataclasses import dataclass, field
from typing import Any

from trainserve_client import _calls
from trainserve_client._http import Call, Retry
from trainserve_client.types import Generation, JobEvent, Token


@dataclass(frozen=True)
class Message:
    event: str
    data: str
    id: str | None


@dataclass
class Decoder:
    retry_ms: int | None = None  # the server's `retry:` advice for reconnecting
    _event: str = ""
    _data: list[str] = field(default_factory=list)
    _id: str | None = None

    def feed(self, line: str) -> Message | None:
        """The message this line completes, if it completes one."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> Message | None:
        message = None
        if self._data:  # a block without data (e.g. only `retry:`) is no message
            message = Message(self._event or "message", "\n".join(self._data), self._id)
        self._event, self._data, self._id = "", [], None
        return message


def data_of(message: Message) -> Any:
    return json.loads(message.data)


class JobEventStream:
    """GET /v1/jobs/{id}/events followed to its `end` message over as many connections as
    it takes: each reconnect sends Last-Event-ID, the id of the last whole message received,
    so nothing is repeated or skipped."""

    def __init__(self, job_id: str, last_event_id: str | None, retry: Retry) -> None:
        self.job_id = job_id
        self.last_event_id = last_event_id
        self.ended = False
        self._retry = retry
        self._drops = 0  # connections in a row that ended without a message
        self._decoder = Decoder()

    def call(self) -> Call[None]:
        """The request for the next connection (which starts a fresh decoder: the rest of
        a message cut short is not coming on it)."""
        self._decoder = Decoder(retry_ms=self._decoder.retry_ms)
        return _calls.job_events(self.job_id, self.last_event_id)

    def feed(self, line: str) -> JobEvent | None:
        """The job event this line completes, if any."""
        message = self._decoder.feed(line)
        if message is None:
            return None
        self._drops = 0
        if message.id is not None:
            self.last_event_id = message.id
        if message.event == "timeout":
            # The server ends a connection after hours (its `timeout` message): go on on a
            # new one, as after a drop.
            return None
        self.ended = message.event == "end"
        return JobEvent(id=message.id, event=message.event, data=data_of(message))

    def reconnect_delay(self) -> float | None:
        """After a connection ended without `end`: the wait before the next, or None when
        connections have failed too many times in a row."""
        self._drops += 1
        if self._drops > self._retry.retries:
            return None
        advised = self._decoder.retry_ms
        base = None if advised is None else advised / 1000
        return self._retry.backoff(self._drops, base)

    def gave_up(self) -> ConnectionError:
        return ConnectionError(
            f"the event stream of job {self.job_id} closed {self._drops} times in a row "
            "before its end message"
        )


class TokenStream:
    """POST /v1/models/{name}/generate with stream: `token` messages, then `done` with the
    totals (kept in `done`)."""

    def __init__(self) -> None:
        self._decoder = Decoder()
        self.done: Generation | None = None

    def feed(self, line: str) -> Token | None:
        message = self._decoder.feed(line)
        if message is None:
            return None
        if message.event == "done":
            self.done = data_of(message)
            return None
        return data_of(message) if message.event == "token" else None
