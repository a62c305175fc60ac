// Datasets: each uploaded dataset with its schema (features or columns, classes, rows).

import { api, itemsOf, nextCursorOf } from "./api.js";
import { errorBox, fmtBytes, fmtNum, h, replace, timeCell } from "./dom.js";

const BUILTIN = ["iris", "digits", "wine", "breast_cancer", "diabetes"];
const LISTED = 40; // names shown before "and N more"

function list(names) {
  if (!Array.isArray(names) || !names.length) return "—";
  const shown = names.slice(0, LISTED).map(String).join(", ");
  if (names.length <= LISTED) return shown;
  return h("details", {}, h("summary", {}, `${shown}, … and ${names.length - LISTED} more`), names.join(", "));
}

function classes(schema) {
  if (!Array.isArray(schema.classes)) return null;
  const counts = schema.class_counts ?? {};
  return h("span", {}, schema.classes.map((c) => h("span", { class: "chip" },
    counts[String(c)] !== undefined ? `${c} (${counts[String(c)]})` : String(c))));
}

const KNOWN = new Set(["kind", "task", "rows", "features", "columns", "classes", "class_counts", "target"]);

function schemaFacts(ds) {
  const schema = ds.schema ?? {};
  const pairs = [
    ["format", ds.format], ["kind", ds.kind], ["task", ds.task], ["rows", fmtNum(schema.rows)],
    ["target", schema.target ?? null],
    ["features", Array.isArray(schema.features) ? [`${schema.features.length}: `, list(schema.features)] : null],
    ["columns", Array.isArray(schema.columns) ? list(schema.columns.map((c) => (typeof c === "object" ? c.name ?? JSON.stringify(c) : c))) : null],
    ["classes", classes(schema)],
  ];
  for (const [key, value] of Object.entries(schema)) {
    if (!KNOWN.has(key) && value !== null && !(typeof value === "object" && !Object.keys(value).length)) {
      pairs.push([key, typeof value === "object" ? h("code", {}, JSON.stringify(value)) : String(value)]);
    }
  }
  pairs.push(["size", fmtBytes(ds.size_bytes)], ["sha256", h("span", { class: "mono small" }, ds.sha256)],
    ["created", timeCell(ds.created_at)]);
  return h("dl", { class: "facts" }, pairs.filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function datasetCard(ds) {
  return h("section", { class: "card", "data-dataset": ds.id },
    h("h2", {}, ds.name, h("span", { class: "muted mono small" }, `  ${ds.id}`)), schemaFacts(ds));
}

export async function datasetsPage(main, signal) {
  const cards = h("div", { class: "grid", id: "datasets" });
  const more = h("button", { type: "button", hidden: true }, "Load more");
  const note = h("div", {});
  replace(main, h("h1", {}, "Datasets"),
    h("p", { class: "muted" }, "Built in, no upload needed: ", BUILTIN.map((b, i) => [i ? ", " : "", h("code", {}, b)]),
      ". Upload others with POST /v1/datasets."),
    note, cards, more);
  let cursor = null;
  const load = async () => {
    const query = cursor ? `?limit=50&cursor=${encodeURIComponent(cursor)}` : "?limit=50";
    const page = await api(`/v1/datasets${query}`, { signal });
    const items = itemsOf(page);
    cursor = nextCursorOf(page);
    cards.append(...items.map(datasetCard));
    more.hidden = !cursor;
    if (!cards.children.length) cards.append(h("p", { class: "muted" }, "No uploaded datasets yet."));
  };
  more.addEventListener("click", () => load().catch((err) => { if (err.status !== 401) replace(note, errorBox(err)); }));
  await load();
}
