// Models: the list, and one model's versions (lineage) and aliases, which move with a click
// and a confirmation.

import { api, enc, itemsOf } from "./api.js";
import { confirmDialog, errorBox, fmtNum, h, replace, timeCell } from "./dom.js";

const SHOWN = ["val_accuracy", "val_loss", "val_f1_macro", "test_accuracy", "val_r2", "val_mae"];

export async function modelsPage(main, signal) {
  const models = itemsOf(await api("/v1/models", { signal }));
  replace(main, h("h1", {}, "Models"),
    models.length ? h("table", { id: "models" },
      h("thead", {}, h("tr", {}, ["Model", "Project", "Latest version", "Created"].map((t) => h("th", {}, t)))),
      h("tbody", {}, models.map((m) => h("tr", { "data-model": m.name },
        h("td", {}, h("a", { href: `#/models/${enc(m.name)}` }, m.name)),
        h("td", {}, m.project),
        h("td", {}, m.latest_version ? `v${m.latest_version}` : "—"),
        h("td", {}, timeCell(m.created_at))))))
      : h("p", { class: "muted" }, "No models yet: a job that succeeds registers one."));
}

function metricsCell(metrics) {
  const names = SHOWN.filter((n) => typeof metrics?.[n] === "number");
  return names.length ? names.map((n) => h("div", { class: "small" }, `${n} ${fmtNum(metrics[n])}`)) : "—";
}

function datasetCell(dataset) {
  if (!dataset) return "—";
  if (dataset.builtin) return `builtin ${dataset.builtin}`;
  const label = dataset.name ? `${dataset.name} ` : "";
  return [label, h("span", { class: "mono small" }, dataset.id ?? JSON.stringify(dataset))];
}

function parentCell(parent) {
  if (!parent) return "—";
  const name = parent.model ?? parent.model_name;
  return name ? h("a", { href: `#/models/${enc(name)}` }, `${name} v${parent.version}`) : JSON.stringify(parent);
}

export async function modelPage(main, signal, name) {
  const path = `/v1/models/${enc(name)}`;
  const note = h("div", {});
  const body = h("div", {});
  replace(main, h("h1", {}, `Model: ${name}`), note, body);

  const moveAlias = async (alias, version, aliases) => {
    const from = aliases[alias];
    const what = from ? `Move alias "${alias}" of ${name} from v${from} to v${version}?`
      : `Point a new alias "${alias}" of ${name} at v${version}?`;
    if (!(await confirmDialog(`${what} Predict requests that name it answer from v${version} at once.`, "Move alias"))) return;
    try {
      await api(`${path}/aliases/${enc(alias)}`, { method: "PUT", body: { version }, signal });
      replace(note, h("p", { class: "ok", id: "alias-done" }, `${alias} → v${version}`));
      await load();
    } catch (err) { if (err.status !== 401) replace(note, errorBox(err)); }
  };
  const removeAlias = async (alias) => {
    if (!(await confirmDialog(`Remove alias "${alias}" of ${name}?`, "Remove alias"))) return;
    try {
      await api(`${path}/aliases/${enc(alias)}`, { method: "DELETE", signal });
      replace(note, h("p", { class: "ok" }, `${alias} removed`));
      await load();
    } catch (err) { if (err.status !== 401) replace(note, errorBox(err)); }
  };

  const load = async () => {
    const model = await api(path, { signal });
    const aliases = model.aliases ?? {};
    const byVersion = new Map();
    for (const [alias, v] of Object.entries(aliases)) byVersion.set(v, [...(byVersion.get(v) ?? []), alias]);
    const aliasInput = h("input", { id: "alias-name", value: "production", list: "alias-names", size: 14, "aria-label": "alias" });
    const versionSelect = h("select", { id: "alias-version", "aria-label": "version" },
      model.versions.map((v) => h("option", { value: v.version }, `v${v.version}`)));
    const aliasForm = h("form", { class: "toolbar", id: "alias-form", onsubmit: (e) => {
      e.preventDefault();
      const alias = aliasInput.value.trim();
      if (alias) moveAlias(alias, Number(versionSelect.value), aliases);
    } }, "Point alias ", aliasInput,
    h("datalist", { id: "alias-names" }, Object.keys(aliases).map((a) => h("option", { value: a }))),
    " at ", versionSelect, h("button", { type: "submit" }, "Move…"));

    replace(body,
      h("div", { class: "card" }, h("dl", { class: "facts" },
        h("dt", {}, "project"), h("dd", {}, model.project),
        h("dt", {}, "created"), h("dd", {}, timeCell(model.created_at)))),
      h("h2", {}, "Aliases"),
      Object.keys(aliases).length ? h("table", { id: "aliases" },
        h("thead", {}, h("tr", {}, ["alias", "version", ""].map((t) => h("th", {}, t)))),
        h("tbody", {}, Object.entries(aliases).map(([alias, v]) => h("tr", { "data-alias": alias },
          h("td", {}, alias), h("td", { "data-version": v }, `v${v}`),
          h("td", {}, h("button", { type: "button", class: "danger", onclick: () => removeAlias(alias) }, "Remove")))))) : h("p", { class: "muted" }, "No aliases: predict without a version answers from the latest."),
      aliasForm,
      h("h2", {}, "Versions"),
      h("table", { id: "versions" },
        h("thead", {}, h("tr", {}, ["version", "created", "job", "dataset", "task", "metrics", "parent", "classes / input", ""]
          .map((t) => h("th", {}, t)))),
        h("tbody", {}, [...model.versions].reverse().map((v) => h("tr", { "data-version": v.version },
          h("td", {}, h("strong", {}, `v${v.version}`), h("div", {}, (byVersion.get(v.version) ?? []).map((a) => h("span", { class: "chip" }, a)))),
          h("td", {}, timeCell(v.created_at)),
          h("td", {}, h("a", { href: `#/jobs/${enc(v.job_id)}`, class: "mono small" }, v.job_id)),
          h("td", {}, datasetCell(v.dataset)),
          h("td", {}, v.task),
          h("td", {}, metricsCell(v.metrics)),
          h("td", {}, parentCell(v.parent)),
          h("td", { class: "small" }, v.classes ? `${v.classes.length} classes` : "—", h("div", { class: "muted" }, `input ${JSON.stringify(v.input_shape)}`),
            h("div", { class: "mono muted", title: v.checkpoint_sha256 }, `sha256 ${String(v.checkpoint_sha256).slice(0, 12)}…`)),
          h("td", {}, aliases.production === v.version ? h("span", { class: "muted small" }, "production")
            : h("button", { type: "button", class: "make-production", onclick: () => moveAlias("production", v.version, aliases) }, "Make production"),
          h("details", {}, h("summary", { class: "small" }, "lineage"),
            h("pre", {}, JSON.stringify({ spec: v.spec, dataset: v.dataset, parent: v.parent, metrics: v.metrics }, null, 2)))))))));
  };
  await load();
}
