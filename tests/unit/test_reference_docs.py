"""docs/ holds the public contract as a clone has it: the pages scripts/docs.py generates from
the settings, the job spec, the CLI and the OpenAPI document must be the committed ones, name
everything they document, and every relative link in README.md and docs/ must reach a file."""

import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from app.cli import main as cli
from app.core.config import Settings
from app.schemas.job import JobSpec

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
HEADING = re.compile(r"^#{1,6} (.+)$", re.MULTILINE)
VARIABLE = re.compile(r"\bTRAINSERVE_[A-Z][A-Z0-9_]*")
QUOTED_VARIABLE = re.compile(r"[\"'](TRAINSERVE_[A-Z][A-Z0-9_]*)[\"']")


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_generator", ROOT / "scripts" / "docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    return load_generator()


@pytest.fixture(scope="module")
def pages(generator: ModuleType) -> dict[str, str]:
    return generator.generate()


def committed(name: str) -> str:
    return (DOCS / name).read_text()


def test_every_setting_has_a_description() -> None:
    missing = [n for n, f in Settings.model_fields.items() if not (f.description or "").strip()]
    assert missing == []


def test_the_committed_pages_are_what_the_code_generates(
    generator: ModuleType, pages: dict[str, str]
) -> None:
    messages = generator.stale(pages)
    assert not messages, "\n".join(messages) + "\nrun python scripts/docs.py"


def test_a_stale_page_is_named(generator: ModuleType, pages: dict[str, str]) -> None:
    (message,) = generator.stale({"cli.md": pages["cli.md"] + "a change\n"})
    assert message.startswith("docs/cli.md is stale") and "+a change" in message


def test_every_setting_is_on_the_configuration_page() -> None:
    text = committed("configuration.md")
    missing = [n for n in Settings.model_fields if f"`TRAINSERVE_{n.upper()}`" not in text]
    assert missing == []


def test_every_command_is_on_the_cli_page() -> None:
    text = committed("cli.md")
    missing = [n for n in cli.commands if f"`trainserve {n}`" not in text]
    assert missing == []


def test_every_path_is_on_the_http_page(generator: ModuleType) -> None:
    text = committed("http.md")
    document: dict[str, Any] = generator.openapi_document()
    missing = [p for p in document["paths"] if f" {p}`" not in text]
    assert document["paths"] and missing == []


def test_the_design_example_is_a_valid_spec(generator: ModuleType) -> None:
    spec = JobSpec.model_validate(generator.DESIGN_EXAMPLE)
    assert spec.model_name == "digits-mlp"
    assert generator.DESIGN_EXAMPLE_JSON in committed("job-spec.md")


def relative_links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text())
    return [
        link
        for link in LINK.findall(text)
        if "://" not in link and not link.startswith(("#", "mailto:"))
    ]


def markdown_pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def test_markdown_links_reach_files_of_the_clone() -> None:
    pages = markdown_pages()
    broken = []
    for page in pages:
        for link in relative_links(page):
            target = (page.parent / link.split("#", 1)[0]).resolve()
            if not target.is_relative_to(ROOT) or not target.exists():
                broken.append(f"{page.relative_to(ROOT)}: {link}")
    assert len(pages) > 5 and broken == []


def anchors(page: Path, generator: ModuleType) -> set[str]:
    """The ids GitHub gives a page's headings (a repeated one gets -1, -2, ...)."""
    seen: dict[str, int] = {}
    for heading in HEADING.findall(FENCE.sub("", page.read_text())):
        slug = generator.anchor(heading.strip())
        seen[slug] = seen.get(slug, -1) + 1
        if seen[slug]:
            seen[f"{slug}-{seen[slug]}"] = 0
    return set(seen)


def test_links_within_a_page_reach_a_heading(generator: ModuleType) -> None:
    broken = []
    for page in markdown_pages():
        targets = anchors(page, generator)
        links = LINK.findall(FENCE.sub("", page.read_text()))
        broken += [f"{page.name}: {x}" for x in links if x.startswith("#") and x not in targets]
    assert broken == []


def test_every_variable_the_docs_name_is_read(generator: ModuleType) -> None:
    """A TRAINSERVE_* name in README.md or docs/ is a setting, or read by the CLI or the
    client, as a string of its own (a name only mentioned in some text does not count)."""
    prefix = Settings.model_config.get("env_prefix", "")
    known = {f"{prefix}{name}".upper() for name in Settings.model_fields}
    for folder in ("app", "worker", "clients/python/src"):
        for source in (ROOT / folder).rglob("*.py"):
            known |= set(QUOTED_VARIABLE.findall(source.read_text()))
    unknown = {
        f"{page.name}: {name}"
        for page in markdown_pages()
        for name in VARIABLE.findall(page.read_text())
        if name not in known
    }
    assert sorted(unknown) == []


def test_a_model_union_gets_a_section_per_arch(generator: ModuleType) -> None:
    """Should `model` become a union discriminated by `arch`, each arch gets its own table."""
    from typing import Annotated, Literal

    from pydantic import BaseModel, Field

    class Mlp(BaseModel):
        arch: Literal["mlp"] = "mlp"
        hidden: list[int] = Field(default_factory=lambda: [128], description="layer sizes")

    class Cnn(BaseModel):
        arch: Literal["cnn"]
        channels: list[int] = Field(default_factory=lambda: [32, 64])

    class Spec(BaseModel):
        model: Annotated[Mlp | Cnn, Field(discriminator="arch")]

    schema = Spec.model_json_schema()
    sections = generator.SpecPage(schema, {}, {}).sections
    titles = [s.splitlines()[0] for s in sections]
    assert titles == [
        "## Top level",
        "## `model` with `arch` = `mlp`",
        "## `model` with `arch` = `cnn`",
    ]
    assert "| `model.hidden` | array of integer |" in sections[1]
    assert "layer sizes" in sections[1] and "`model.channels`" in sections[2]
