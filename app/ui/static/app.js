// The dashboard: sign-in, hash routes (#/jobs, #/jobs/ID, #/models, #/models/NAME,
// #/datasets), one page at a time. Routes live in the hash so no key, and no data, is ever
// part of a URL the server sees.

import { api, clearKey, getKey, setKey, setUnauthorizedHandler } from "./api.js";
import { datasetsPage } from "./datasets.js";
import { errorBox, h, replace } from "./dom.js";
import { jobPage, jobsPage } from "./jobs.js";
import { modelPage, modelsPage } from "./models.js";

const main = document.getElementById("main");
const login = document.getElementById("login");
const loginError = document.getElementById("login-error");
const nav = document.getElementById("nav");
let current = null; // the page's AbortController: aborted when the route changes

const ROUTES = [
  [/^#?\/?(?:jobs)?\/?$/, "jobs", () => jobsPage],
  [/^#\/jobs\/([^/]+)$/, "jobs", () => jobPage],
  [/^#\/models\/?$/, "models", () => modelsPage],
  [/^#\/models\/([^/]+)$/, "models", () => modelPage],
  [/^#\/datasets\/?$/, "datasets", () => datasetsPage],
];

function showLogin(message = "", kind = "error") {
  current?.abort();
  current = null;
  main.replaceChildren();
  main.hidden = true;
  nav.hidden = true;
  login.hidden = false;
  loginError.textContent = message;
  loginError.className = kind;
  loginError.hidden = !message;
  document.getElementById("key").focus();
}

async function signIn(event) {
  event.preventDefault();
  const input = document.getElementById("key");
  const key = input.value.trim();
  if (!key) return;
  setKey(key);
  input.value = "";
  try {
    await api("/v1/jobs?limit=1");
  } catch (err) {
    // 401 has already brought the form back; a 403 is a key that works with fewer scopes
    if (err.status === 401) return;
    if (err.status !== 403) {
      clearKey();
      showLogin(`Could not check the key: ${err.message}`);
      return;
    }
  }
  route();
}

function route() {
  if (!getKey()) {
    showLogin();
    return;
  }
  login.hidden = true;
  main.hidden = false;
  nav.hidden = false;
  current?.abort();
  current = new AbortController();
  const hash = location.hash || "#/jobs";
  const found = ROUTES.map(([re, section, page]) => [hash.match(re), section, page])
    .find(([match]) => match);
  for (const link of nav.querySelectorAll("[data-nav]")) {
    link.classList.toggle("active", found?.[1] === link.dataset.nav);
  }
  const args = found ? decodeAll(found[0].slice(1)) : null;
  if (!args) {
    replace(main, h("h1", {}, "Not found"), h("p", {}, "No page at ", h("code", {}, hash), "."));
    return;
  }
  const page = found[2];
  const signal = current.signal;
  main.replaceChildren(h("p", { class: "muted" }, "Loading…"));
  page()(main, signal, ...args).catch((err) => {
    if (signal.aborted || err.name === "AbortError" || err.status === 401) return;
    main.replaceChildren(errorBox(err));
  });
}

/** The route's parts, decoded; null when one is not valid percent-encoding. */
function decodeAll(parts) {
  try {
    return parts.map(decodeURIComponent);
  } catch {
    return null;
  }
}

setUnauthorizedHandler((err) => {
  clearKey();
  showLogin(`The API refused this key: ${err.message} (${err.status} ${err.code}). Enter a valid key.`);
});

document.getElementById("login-form").addEventListener("submit", signIn);
document.getElementById("sign-out").addEventListener("click", () => {
  clearKey();
  showLogin("Signed out.", "notice");
});
window.addEventListener("hashchange", route);
route();
