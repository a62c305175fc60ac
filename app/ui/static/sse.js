// Server-Sent Events over fetch(): EventSource cannot send an Authorization header, so the
// stream is read from a ReadableStream, parsed here, and reconnected with Last-Event-ID.

import { ApiError, authHeaders, errorFrom, send } from "./api.js";

/** The text/event-stream format (HTML Living Standard, "Interpreting an event stream"). */
export class SSEParser {
  constructor() {
    this.buffer = "";
    this.data = [];
    this.event = "";
    this.id = null;
    this.retry = null;
  }

  /** Feed a chunk of text; returns the messages it completed: {event, data, id}. */
  feed(chunk) {
    this.buffer += chunk;
    const lines = this.buffer.split(/\r\n|\r|\n/);
    this.buffer = lines.pop(); // the last piece may be half a line
    const out = [];
    for (const line of lines) {
      const message = this.line(line);
      if (message) out.push(message);
    }
    return out;
  }

  line(line) {
    if (line === "") return this.dispatch();
    if (line.startsWith(":")) return null; // a comment (keep-alive)
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.event = value;
    else if (field === "id" && !value.includes("\0")) this.id = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
    return null;
  }

  dispatch() {
    const message = this.data.length
      ? { event: this.event || "message", data: this.data.join("\n"), id: this.id }
      : null;
    this.data = [];
    this.event = "";
    return message;
  }
}

const sleep = (ms, signal) => new Promise((resolve) => {
  const timer = setTimeout(resolve, ms);
  signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
});

/**
 * Follow a stream until it sends `end`, the signal aborts, or the API refuses it (4xx).
 * onMessage gets {event, data (parsed JSON), id}. A dropped connection, or a stream that
 * closed without `end` (the server's timeout), is opened again after `retry` ms, from the
 * last id seen.
 */
export async function follow(path, { onMessage, onState = () => {}, signal }) {
  let lastId = null;
  let retry = 1000;
  while (!signal.aborted) {
    const parser = new SSEParser();
    let ended = false;
    try {
      const headers = authHeaders({ Accept: "text/event-stream" });
      if (lastId) headers["Last-Event-ID"] = lastId;
      const response = await send(path, { headers, signal });
      if (!response.ok) throw await errorFrom(response);
      onState("live");
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        for (const message of parser.feed(value)) {
          if (message.id) lastId = message.id;
          if (message.event === "end") ended = true;
          onMessage({ ...message, data: parse(message.data) });
        }
        if (parser.retry !== null) retry = parser.retry;
      }
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof ApiError && err.status >= 400 && err.status < 500) throw err;
      onState("reconnecting");
    }
    if (ended) {
      onState("ended");
      return;
    }
    await sleep(retry, signal);
  }
}

function parse(data) {
  try {
    return JSON.parse(data);
  } catch {
    return data;
  }
}
