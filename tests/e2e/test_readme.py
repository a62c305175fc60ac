"""The README cannot rot: its quick-start blocks (between `<!-- readme-test: start -->` and
`<!-- readme-test: end -->`) run in order, as a new user would paste them, against a fresh
`trainserve up` in an empty directory, with the clone's .venv where the README says it is."""

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support import BIN, Proc, base_env, free_port, wait_http_ok

ROOT = Path(__file__).resolve().parents[2]
REGION = re.compile(r"<!-- readme-test: start -->(.*?)<!-- readme-test: end -->", re.S)
BLOCK = re.compile(r"^```(sh|python)\n(.*?)^```", re.S | re.M)


def readme_blocks() -> list[tuple[str, str]]:
    """(language, code) of every tested block, in the README's order."""
    text = (ROOT / "README.md").read_text()
    return [match.groups() for region in REGION.findall(text) for match in BLOCK.finditer(region)]


def as_script(blocks: list[tuple[str, str]]) -> str:
    """One bash script, so variables carry from block to block; each block announces itself
    and a python block runs with the python the README's PATH gives."""
    lines = ["set -eo pipefail"]
    for number, (language, code) in enumerate(blocks, start=1):
        lines.append(f"echo '=== block {number} ({language})' >&2")
        lines.append(code if language == "sh" else f"python - <<'PYTHON'\n{code}PYTHON")
    return "\n".join(lines) + "\n"


def test_the_readme_finds_its_blocks() -> None:
    blocks = readme_blocks()
    assert len(blocks) >= 8 and {language for language, _ in blocks} == {"sh", "python"}
    assert any("jobs submit digits.json --follow" in code for _, code in blocks)


def test_the_readme_quick_start_works_as_written(tmp_path: Path) -> None:
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    port = free_port()
    env = base_env()
    up = Proc([str(BIN), "up", "--port", str(port)], env, tmp_path / "up.log", cwd=tmp_path)
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/readyz", up)
        done = subprocess.run(
            ["bash", "-c", as_script(readme_blocks())],
            cwd=tmp_path,
            env={**env, "PATH": os.environ["PATH"], "COLUMNS": "100"},
            capture_output=True,
            text=True,
            timeout=300,
        )
        shown = f"stdout:\n{done.stdout[-6000:]}\nstderr:\n{done.stderr[-6000:]}"
        assert done.returncode == 0, shown
        assert '"error"' not in done.stdout, shown
        # what the blocks promise: a live follow, the predictions, the key, the export
        assert done.stdout.count('"predictions"') >= 2 and "succeeded" in done.stdout, shown
        assert re.search(r"^ts_\S+$", done.stdout, re.M), shown  # keys create prints the key
        assert (tmp_path / "digits-mlp-v1.onnx").stat().st_size > 1000
    finally:
        up.stop()
        print(up.output()[-4000:])
