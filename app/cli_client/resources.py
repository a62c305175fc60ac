"""`trainserve datasets ...` and `trainserve models ...`."""

from pathlib import Path
from typing import Any

import click
from trainserve_client.types import ModelVersion

from app.cli_client.output import cell, emit_json, fields, metrics_text, table, when
from app.cli_client.target import Target, client_command, json_argument

FORMATS = ("csv", "npz", "images-zip", "text-csv", "text")


@click.group()
def datasets() -> None:
    """Datasets: upload a file, list, show."""


@client_command(datasets, "upload")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True)
@click.option("--format", "fmt", required=True, type=click.Choice(FORMATS))
@click.option("--target", "target_column", help="csv: the label column")
@click.option("--task", type=click.Choice(["classification", "regression"]))
@click.option(
    "--form",
    "extra",
    multiple=True,
    metavar="FIELD=VALUE",
    help="another form field of the upload (e.g. image_size=64, channels=1, impute=mean)",
)
def upload(
    target: Target,
    file: Path,
    name: str,
    fmt: str,
    target_column: str | None,
    task: str | None,
    extra: tuple[str, ...],
) -> None:
    """Upload FILE as a dataset; prints its id (text) or the dataset (json)."""
    form: dict[str, Any] = {"target": target_column, "task": task}
    for item in extra:
        field, sep, value = item.partition("=")
        if not sep or not field:
            raise click.BadParameter(f"{item!r} is not FIELD=VALUE", param_hint="--form")
        form[field] = value
    with target.client() as client:
        dataset = client.datasets.upload(file, name, fmt, **form)
    if target.json:
        emit_json(dataset)
    else:
        click.echo(dataset["id"])


@client_command(datasets, "list")
def list_datasets(target: Target) -> None:
    """List datasets (json: an array of the API's datasets)."""
    with target.client() as client:
        found = list(client.datasets.list())
    if target.json:
        emit_json(found)
        return
    table(
        ("ID", "NAME", "FORMAT", "KIND", "TASK", "BYTES", "CREATED"),
        (
            [
                d["id"],
                d["name"],
                d["format"],
                d["kind"],
                d["task"],
                d["size_bytes"],
                when(d["created_at"]),
            ]
            for d in found
        ),
    )


@client_command(datasets, "show")
@click.argument("dataset_id")
def show_dataset(target: Target, dataset_id: str) -> None:
    """Show a dataset and its schema."""
    with target.client() as client:
        dataset = client.datasets.get(dataset_id)
    if target.json:
        emit_json(dataset)
        return
    fields((name, when(str(v)) if name == "created_at" else v) for name, v in dataset.items())


@click.group()
def models() -> None:
    """Trained models: list, show versions, move aliases, predict."""


@client_command(models, "list")
def list_models(target: Target) -> None:
    """List models (json: an array of the API's models)."""
    with target.client() as client:
        found = list(client.models.list())
    if target.json:
        emit_json(found)
        return
    table(
        ("NAME", "PROJECT", "LATEST", "CREATED"),
        ((m["name"], m["project"], m["latest_version"], when(m["created_at"])) for m in found),
    )


@client_command(models, "show")
@click.argument("name")
@click.option("--version", "ref", help="one version (a number or an alias) and its lineage")
def show_model(target: Target, name: str, ref: str | None) -> None:
    """Show a model: its aliases and versions, or with --version one version's lineage."""
    with target.client() as client:
        if ref is None:
            model = client.models.get(name)
            if target.json:
                emit_json(model)
                return
            _print_model(model)
            return
        version = int(ref) if ref.isdigit() else _alias_version(client.models.get(name), ref)
        found = client.models.version(name, version)
    if target.json:
        emit_json(found)
    else:
        _print_version(found)


def _alias_version(model: dict[str, Any] | Any, alias: str) -> int:
    aliases: dict[str, int] = model["aliases"]
    if alias not in aliases:
        known = ", ".join(sorted(aliases)) or "none"
        raise click.BadParameter(f"no alias {alias!r} (aliases: {known})", param_hint="--version")
    return aliases[alias]


def _print_model(model: Any) -> None:
    aliases: dict[str, int] = model["aliases"]
    fields(
        [
            ("name", model["name"]),
            ("project", model["project"]),
            ("created", when(model["created_at"])),
            ("aliases", ", ".join(f"{a} → {v}" for a, v in sorted(aliases.items())) or None),
        ]
    )
    table(
        ("VERSION", "JOB", "TASK", "CREATED", "METRICS"),
        (
            (v["version"], v["job_id"], v["task"], when(v["created_at"]), _final(v, most=3))
            for v in model["versions"]
        ),
    )


def _final(version: ModelVersion, most: int | None = None) -> str:
    scalars = {k: v for k, v in version["metrics"].items() if isinstance(v, int | float)}
    return metrics_text(scalars, most)


def _print_version(version: ModelVersion) -> None:
    fields(
        [
            ("model", version["model_name"]),
            ("version", version["version"]),
            ("project", version["project"]),
            ("job", version["job_id"]),
            ("task", version["task"]),
            ("dataset", version["dataset"]),
            ("metrics", _final(version) or None),
            ("classes", version["classes"]),
            ("input shape", version["input_shape"]),
            ("checkpoint sha256", version["checkpoint_sha256"]),
            ("parent", version.get("parent")),
            ("created", when(version["created_at"])),
            ("spec", version["spec"]),
        ]
    )


@client_command(models, "alias")
@click.argument("name")
@click.argument("alias")
@click.argument("version", type=click.IntRange(min=1), required=False)
@click.option("--delete", is_flag=True, help="remove the alias instead")
def alias(target: Target, name: str, alias: str, version: int | None, delete: bool) -> None:
    """Point an alias of a model at a version, or remove it.

    `trainserve models alias NAME production 3` moves `production` to version 3; predict
    without a version answers with `production` when it is set. --delete removes ALIAS."""
    if delete == (version is not None):
        raise click.UsageError("give a VERSION, or --delete without one")
    with target.client() as client:
        if version is None:
            client.models.delete_alias(name, alias)
            if not target.json:  # the API answers 204, no body: json prints nothing
                click.echo(f"removed alias {alias} of {name}")
            return
        moved = client.models.set_alias(name, alias, version)
    if target.json:
        emit_json(moved)
    else:
        click.echo(f"{name}: {moved['alias']} → version {moved['version']}")


@client_command(models, "predict")
@click.argument("name")
@click.argument("inputs", metavar="INPUTS")
@click.option(
    "--version", "ref", help="a version number or an alias (default: production, else the latest)"
)
def predict(target: Target, name: str, inputs: str, ref: str | None) -> None:
    """Predict with a model: one answer per row of INPUTS.

    INPUTS is JSON, inline, as @FILE, or - for stdin: a list of rows (or {"inputs": [...]}),
    e.g. '[[5.1, 3.5, 1.4, 0.2]]'."""
    rows = json_argument(inputs, "INPUTS")
    if isinstance(rows, dict) and "inputs" in rows:
        rows = rows["inputs"]
    if not isinstance(rows, list):
        raise click.BadParameter("a JSON list of rows", param_hint="INPUTS")
    version: int | str | None = int(ref) if ref and ref.isdigit() else ref
    with target.client() as client:
        answer = client.models.predict(name, rows, version)
    if target.json:
        emit_json(answer)
        return
    click.echo(f"model {answer['model_name']} version {answer['model_version']}")
    probabilities = answer.get("probabilities")
    headers = ("ROW", "PREDICTION", "PROBABILITY") if probabilities else ("ROW", "PREDICTION")
    table(
        headers,
        (
            (i, cell(p), *([max(probabilities[i])] if probabilities else []))
            for i, p in enumerate(answer["predictions"])
        ),
    )
