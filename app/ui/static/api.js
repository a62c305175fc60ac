// The API key and every call to /v1. The key lives in sessionStorage (this tab, until it
// closes or the user signs out) and travels only in the Authorization header.

const KEY = "trainserve.key";

export const getKey = () => sessionStorage.getItem(KEY);
export const setKey = (key) => sessionStorage.setItem(KEY, key);
export const clearKey = () => sessionStorage.removeItem(KEY);

/** An answer that was not a success, from the API's {"error": {code, message, details}}. */
export class ApiError extends Error {
  constructor(status, code, message, details = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

let onUnauthorized = () => {};

/** app.js sets what a 401 does: forget the key and ask for one again. */
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

export function authHeaders(extra = {}) {
  const key = getKey();
  if (!key) throw new ApiError(401, "no_key", "Enter an API key to continue.");
  return { Authorization: `Bearer ${key}`, ...extra };
}

/** fetch() that names a network failure (the request never got an answer). */
export async function send(path, init) {
  try {
    return await fetch(path, { cache: "no-store", credentials: "omit", ...init });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "network_error", `The server could not be reached (${err.message}).`);
  }
}

/** JSON in, JSON out; anything but a 2xx becomes an ApiError. */
export async function api(path, { method = "GET", body, signal } = {}) {
  const headers = authHeaders({ Accept: "application/json" });
  const init = { method, headers, signal };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await send(path, init);
  if (!response.ok) throw await errorFrom(response);
  return response.status === 204 ? null : response.json();
}

export async function errorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON (a proxy's page, say): the status line says enough
  }
  const e = body && typeof body.error === "object" && body.error !== null ? body.error : {};
  const message = e.message || (typeof body?.error === "string" ? body.error : "")
    || response.statusText || "the request failed";
  const err = new ApiError(response.status, e.code || `http_${response.status}`, message,
    e.details ?? null);
  if (response.status === 401) onUnauthorized(err);
  return err;
}

/** A list endpoint's rows, whether it answers a bare array or a page {items, next_cursor}. */
export function itemsOf(body) {
  if (Array.isArray(body)) return body;
  return Array.isArray(body?.items) ? body.items : [];
}

export const nextCursorOf = (body) => (Array.isArray(body) ? null : body?.next_cursor ?? null);

export const enc = encodeURIComponent;
