// Jobs: the list (polled while anything is queued or running) and one job's page (history
// from /metrics, then live over the event stream).

import { api, enc, itemsOf, nextCursorOf } from "./api.js";
import { lineChart } from "./chart.js";
import { confirmDialog, errorBox, fmtNum, h, replace, statusBadge, timeCell } from "./dom.js";
import { follow } from "./sse.js";

const ACTIVE = new Set(["queued", "running"]);
const STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"];
const HEADLINE = ["train_loss", "val_loss", "val_accuracy", "val_f1_macro", "val_r2", "test_accuracy"];

const wait = (ms, signal) => new Promise((resolve) => {
  const timer = setTimeout(resolve, ms);
  signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
});

export function progressCell(job) {
  const { epoch = 0, epochs = 0 } = job.progress ?? {};
  const total = epochs || job.spec?.training?.epochs || 0;
  return h("span", { class: "progress", "data-epoch": epoch },
    h("progress", { max: total || 1, value: Math.min(epoch, total || 1) }), ` ${epoch}/${total || "?"}`);
}

function headline(metrics) {
  const names = HEADLINE.filter((n) => typeof metrics?.[n] === "number");
  if (!names.length) return h("span", { class: "muted" }, "—");
  return h("span", { class: "small" }, names.map((n, i) => [i ? " · " : "", `${n} ${fmtNum(metrics[n])}`]));
}

function jobRow(job) {
  return h("tr", { "data-job": job.id },
    h("td", {}, h("a", { href: `#/jobs/${enc(job.id)}` }, job.model_name),
      h("div", { class: "muted small mono" }, job.id)),
    h("td", {}, statusBadge(job.status)),
    h("td", {}, progressCell(job)),
    h("td", {}, headline(job.metrics)),
    h("td", {}, job.model_version ? h("a", { href: `#/models/${enc(job.model_name)}` }, `v${job.model_version}`) : "—"),
    h("td", {}, timeCell(job.created_at)));
}

export async function jobsPage(main, signal) {
  const filter = h("select", { id: "status-filter", "aria-label": "status" },
    h("option", { value: "" }, "all statuses"), STATUSES.map((st) => h("option", { value: st }, st)));
  const rows = h("tbody", {});
  const more = h("button", { type: "button", hidden: true }, "Load more");
  const note = h("div", {});
  replace(main, h("h1", {}, "Jobs"),
    h("div", { class: "toolbar" }, filter, h("span", { class: "muted small", id: "poll-state" }, "")),
    note,
    h("table", { id: "jobs" },
      h("thead", {}, h("tr", {}, ["Model", "Status", "Progress", "Latest metrics", "Version", "Created"]
        .map((t) => h("th", {}, t)))), rows),
    more);
  let extra = []; // pages fetched with "Load more", kept while polling the first
  let cursor = null;
  const query = (after) => {
    const params = new URLSearchParams({ limit: "50" });
    if (filter.value) params.set("status", filter.value);
    if (after) params.set("cursor", after);
    return `/v1/jobs?${params}`;
  };
  const draw = (jobs) => {
    replace(rows, jobs.length ? jobs.map(jobRow)
      : h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No jobs yet. Submit one with POST /v1/jobs.")));
    more.hidden = !cursor;
  };
  let first = [];
  const load = async () => {
    const page = await api(query(null), { signal });
    first = itemsOf(page);
    if (!extra.length) cursor = nextCursorOf(page);
    draw([...first, ...extra]);
    return [...first, ...extra].some((j) => ACTIVE.has(j.status));
  };
  filter.addEventListener("change", () => { extra = []; load().catch(show); });
  more.addEventListener("click", async () => {
    try {
      const page = await api(query(cursor), { signal });
      extra = [...extra, ...itemsOf(page)];
      cursor = nextCursorOf(page);
      draw([...first, ...extra]);
    } catch (err) { show(err); }
  });
  const show = (err) => { if (!signal.aborted && err.status !== 401) replace(note, errorBox(err)); };
  let active = await load();
  const state = main.querySelector("#poll-state");
  while (!signal.aborted) {
    state.textContent = active ? "live: refreshing every 2 s" : "";
    await wait(active ? 2000 : 10000, signal);
    if (signal.aborted) return;
    try {
      active = await load();
      replace(note);
    } catch (err) {
      if (signal.aborted || err.status === 401) return;
      show(err);
    }
  }
}

// ---- one job -------------------------------------------------------------------------------

function chartGroup(name) {
  if (name.includes("[")) return null; // per-class scores: in the table, not on a chart
  if (name.endsWith("loss")) return "loss";
  if (/(accuracy|precision|recall|f1|r2|perplexity)/.test(name)) return "scores";
  return "other";
}

class Curves {
  constructor() {
    this.byEpoch = new Map(); // epoch → {name: value}; a replayed epoch overwrites itself
    this.charts = { loss: lineChart("Loss", "loss"), scores: lineChart("Scores", "scores"),
      other: lineChart("Other metrics", "other") };
  }

  add(epoch, metrics) {
    this.byEpoch.set(epoch, { ...(this.byEpoch.get(epoch) ?? {}), ...metrics });
  }

  draw() {
    const groups = { loss: new Map(), scores: new Map(), other: new Map() };
    const epochs = [...this.byEpoch.keys()].sort((a, b) => a - b);
    for (const epoch of epochs) {
      for (const [name, value] of Object.entries(this.byEpoch.get(epoch))) {
        const group = chartGroup(name);
        if (!group || typeof value !== "number") continue;
        if (!groups[group].has(name)) groups[group].set(name, []);
        groups[group].get(name).push([epoch, value]);
      }
    }
    for (const [key, chart] of Object.entries(this.charts)) {
      chart.update(groups[key]);
      chart.hidden = key !== "loss" && groups[key].size === 0;
    }
  }
}

function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function confusionTable(report) {
  const classes = report.classes ?? [];
  const matrix = report.confusion_matrix ?? [];
  return h("table", { class: "confusion", "data-confusion": "" },
    h("thead", {}, h("tr", {}, h("th", {}, "true ↓ / predicted →"), classes.map((c) => h("th", {}, String(c))))),
    h("tbody", {}, matrix.map((row, i) => {
      const total = row.reduce((a, b) => a + b, 0) || 1;
      return h("tr", {}, h("th", {}, String(classes[i] ?? i)),
        row.map((n) => h("td", { class: `q${Math.min(5, Math.ceil((n / total) * 5))}` }, n)));
    })));
}

function perClassTable(report) {
  const perClass = report.per_class ?? {};
  return h("table", { class: "per-class" },
    h("thead", {}, h("tr", {}, ["class", "precision", "recall", "F1", "support"].map((t, i) =>
      h("th", { class: i ? "num" : "" }, t)))),
    h("tbody", {}, Object.entries(perClass).map(([label, sc]) => h("tr", {},
      h("td", {}, label), ["precision", "recall", "f1", "support"].map((k) =>
        h("td", { class: "num" }, fmtNum(sc[k])))))));
}

function reportSection(job) {
  const report = job.report ?? {};
  const parts = [];
  const epoch = report.best_epoch ?? report.epoch;
  for (const [key, title] of [["validation", "Validation"], ["test", "Test split"]]) {
    const part = report[key];
    if (!part?.confusion_matrix) continue;
    const when = key === "validation" && epoch ? ` (epoch ${epoch})` : "";
    parts.push(h("div", { class: "card", "data-report": key },
      h("h2", {}, `${title}${when}: confusion matrix`), confusionTable(part),
      h("h2", {}, "Per-class scores"), perClassTable(part)));
  }
  if (!parts.length) {
    const why = job.status === "succeeded" || !ACTIVE.has(job.status)
      ? "This job recorded no confusion matrix (a regression, a generator, or no held-out rows)."
      : "The confusion matrix appears after the first epoch.";
    return h("p", { class: "muted" }, why);
  }
  return h("div", { class: "grid" }, parts);
}

function eventKey(ev) {
  return `${ev.time}|${ev.attempt}|${ev.kind}|${ev.message}`;
}

function eventRow(ev) {
  return h("tr", {}, h("td", {}, timeCell(ev.time)), h("td", { class: "num" }, ev.attempt),
    h("td", {}, ev.kind), h("td", {}, ev.message));
}

export async function jobPage(main, signal, jobId) {
  const path = `/v1/jobs/${enc(jobId)}`;
  let job = await api(path, { signal });
  const points = await api(`${path}/metrics`, { signal });
  const curves = new Curves();
  for (const p of points) curves.add(p.epoch, { [p.name]: p.value });
  const events = new Map(job.events.map((e) => [eventKey(e), e]));

  const head = h("div", {});
  const summary = h("div", { class: "card" });
  const report = h("div", {});
  const eventRows = h("tbody", {});
  const note = h("div", {});
  const live = h("span", { class: "muted small", id: "stream-state" });
  replace(main, head, note,
    h("div", { class: "grid" }, summary, curves.charts.loss, curves.charts.scores, curves.charts.other),
    h("h2", {}, "Confusion matrix and per-class scores"), report,
    h("h2", {}, "Events ", live),
    h("div", { class: "events card" }, h("table", { id: "events" }, h("thead", {}, h("tr", {},
      ["time", "attempt", "kind", "message"].map((t) => h("th", {}, t)))), eventRows)),
    h("details", {}, h("summary", {}, "Spec"), h("pre", {}, JSON.stringify(job.spec, null, 2))));

  const cancel = async () => {
    const ok = await confirmDialog(`Cancel job ${job.id} (${job.model_name})? A running job stops at its next step and keeps its last checkpoint.`, "Cancel job");
    if (!ok) return;
    try {
      job = { ...job, ...(await api(`${path}/cancel`, { method: "POST", signal })) };
      replace(note, h("p", { class: "ok" }, "Cancel requested."));
      draw();
    } catch (err) { if (err.status !== 401) replace(note, errorBox(err)); }
  };
  const draw = () => {
    replace(head, h("h1", {}, `Job: ${job.model_name} `, statusBadge(job.status)),
      h("div", { class: "toolbar" }, h("span", { class: "mono muted" }, job.id),
        ACTIVE.has(job.status) ? h("button", { type: "button", class: "danger", id: "cancel-job", onclick: cancel }, "Cancel job") : null));
    replace(summary, facts([
      ["status", [statusBadge(job.status), job.status_message ? ` ${job.status_message}` : ""]],
      ["progress", progressCell(job)],
      ["samples/s", fmtNum(job.progress?.samples_per_s)],
      ["attempt", job.attempt],
      ["dataset", job.spec?.dataset?.builtin ? `builtin ${job.spec.dataset.builtin}` : job.spec?.dataset?.id ?? "—"],
      ["arch", job.spec?.model?.arch ?? "—"],
      ["version", job.model_version ? h("a", { href: `#/models/${enc(job.model_name)}` }, `${job.model_name} v${job.model_version}`) : "—"],
      ["created", timeCell(job.created_at)], ["started", timeCell(job.started_at)], ["finished", timeCell(job.finished_at)],
    ]));
    replace(report, reportSection(job));
    replace(eventRows, [...events.values()].map(eventRow));
    curves.draw();
  };
  draw();

  // Messages come in bursts (a reconnect replays history): one redraw per burst.
  let drawPending = false;
  const schedule = () => {
    if (drawPending) return;
    drawPending = true;
    setTimeout(() => { drawPending = false; if (!signal.aborted) draw(); }, 0);
  };
  // The job row (report, progress, status message) is read again after an epoch or the end;
  // one read at a time, and one more if something arrived meanwhile.
  let busy = false;
  let again = false;
  const refresh = async () => {
    if (busy) { again = true; return; }
    busy = true;
    try {
      do {
        again = false;
        await wait(250, signal);
        if (signal.aborted) return;
        job = await api(path, { signal });
        for (const e of job.events) events.set(eventKey(e), e);
        schedule();
      } while (again && !signal.aborted);
    } catch (err) {
      if (!signal.aborted && err.status !== 401) replace(note, errorBox(err));
    } finally {
      busy = false;
    }
  };
  const onMessage = ({ event, data }) => {
    if (event === "metrics") {
      curves.add(data.epoch, data.metrics);
      job.progress = { ...job.progress, epoch: Math.max(job.progress?.epoch ?? 0, data.epoch) };
      schedule();
      refresh();
    } else if (event === "status" || event === "event") {
      events.set(eventKey(data), data);
      if (event === "status") job.status = data.status;
      schedule();
    } else if (event === "end") {
      refresh();
    }
  };
  const states = { live: "● live", reconnecting: "reconnecting…", ended: "" };
  if (!ACTIVE.has(job.status)) return;
  try {
    await follow(`${path}/events`, { onMessage, signal, onState: (st) => { live.textContent = states[st] ?? ""; } });
  } catch (err) {
    if (signal.aborted || err.status === 401) return;
    replace(note, errorBox(err));
  }
}
