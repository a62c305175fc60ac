// Small DOM helpers. Text always goes in as text (never as HTML), so names and messages
// from the API cannot inject markup.

import { ApiError } from "./api.js";

/** h("a", {href: "#/jobs", class: "x", onclick: fn}, "text", child, [more]) */
export function h(tag, props = {}, ...children) {
  return fill(document.createElement(tag), props, children);
}

const SVG_NS = "http://www.w3.org/2000/svg"; // a namespace name, never fetched

export function s(tag, props = {}, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), props, children);
}

function fill(el, props, children) {
  for (const [name, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export function fmtTime(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
}

export function timeCell(iso) {
  return h("time", { datetime: iso ?? "", title: iso ?? "" }, fmtTime(iso));
}

export function fmtNum(value) {
  if (typeof value !== "number") return value === null || value === undefined ? "—" : String(value);
  if (Number.isInteger(value)) return String(value);
  const abs = Math.abs(value);
  return abs !== 0 && (abs < 1e-3 || abs >= 1e5) ? value.toExponential(3) : value.toFixed(4);
}

export function fmtBytes(n) {
  if (typeof n !== "number") return "—";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

export const statusBadge = (status) => h("span", { class: `status ${status}`, "data-status": status }, status);

/** An error for a person: the API's message, its code and status, and what details say. */
export function errorBox(err) {
  const box = h("div", { class: "error", role: "alert" });
  if (err instanceof ApiError) {
    const where = err.status ? `${err.status} ${err.code}` : err.code;
    box.append(h("strong", {}, err.message), h("span", { class: "muted" }, ` (${where})`));
    const details = detailLines(err.details);
    if (details.length) box.append(h("ul", {}, details.map((line) => h("li", {}, line))));
  } else {
    box.append(h("strong", {}, String(err?.message ?? err)));
  }
  return box;
}

function detailLines(details) {
  if (details === null || details === undefined) return [];
  if (Array.isArray(details)) {
    return details.map((d) => (d && typeof d === "object" && "field" in d
      ? `${d.field}: ${d.msg ?? d.message ?? ""}` : JSON.stringify(d)));
  }
  if (typeof details === "object") {
    return Object.entries(details).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`);
  }
  return [String(details)];
}

/** The page's <dialog>: resolves true when the user confirms. */
export function confirmDialog(message, confirmLabel = "Confirm") {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-message").textContent = message;
  document.getElementById("confirm-ok").textContent = confirmLabel;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
}

/** Replace a node's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  return fill(el, {}, children);
}
