"""docs/architecture.md maps behaviours to modules: every path it names must exist, and
every package of app/ and worker/ must appear in it, so the map moves with the code."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
PATH = re.compile(r"`((?:app|worker|migrations|tests|bench|docs)/[\w./-]*)`")


def named_paths() -> list[str]:
    return PATH.findall(DOC.read_text())


def test_the_map_names_paths() -> None:
    assert len(named_paths()) > 30


def test_every_path_the_map_names_exists() -> None:
    missing = [p for p in named_paths() if not (ROOT / p).exists()]
    assert missing == []


def test_every_package_is_on_the_map() -> None:
    packages = {
        str(init.parent.relative_to(ROOT))
        for top in ("app", "worker")
        for init in (ROOT / top).rglob("__init__.py")
    }
    named = named_paths()
    unmapped = [
        p for p in sorted(packages) if not any(n.startswith(p + "/") or n == p + "/" for n in named)
    ]
    assert unmapped == []
