"""`pip install ./clients/python` into a new virtual environment, as a user would: it brings
httpx and not torch (nor anything of the server), and a script there talks to the real stack."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from trainserve_client import __version__

from tests.client.conftest import Stack
from tests.integration.conftest import ADMIN_KEY
from tests.support import held_out_digits

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "python"
SCRIPT = textwrap.dedent(
    """
    import json, sys
    import trainserve_client
    from trainserve_client import Client

    rows = json.loads(sys.argv[1])
    with Client() as ts:  # TRAINSERVE_URL and TRAINSERVE_KEY
        names = [m["name"] for m in ts.models.list()]
        answer = ts.models.predict("client-digits", rows)
    heavy = sorted({"torch", "app", "fastapi", "numpy"} & set(sys.modules))
    print(json.dumps({"version": trainserve_client.__version__, "names": names,
                      "predictions": answer["predictions"], "heavy": heavy}))
    """
)


def run(args: list[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kwargs)


@pytest.mark.slow
def test_a_fresh_venv_installs_the_client_and_predicts(
    stack: Stack, trained: dict[str, Any], tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    made = run([sys.executable, "-m", "venv", venv])
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    # A copy of the folder: a build writes into the tree it builds (build/, *.egg-info).
    source = tmp_path / "client"
    run(["cp", "-r", CLIENT, source]).check_returncode()
    installed = run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", source])
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert run([python, "-c", "import torch"]).returncode != 0, "torch came with the client"
    rows = held_out_digits()[0][:3]
    env = {"TRAINSERVE_URL": stack.url, "TRAINSERVE_KEY": ADMIN_KEY, "PATH": "/usr/bin:/bin"}
    out = run([python, "-c", SCRIPT, json.dumps(rows)], env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert "client-digits" in result["names"] and len(result["predictions"]) == 3
    assert result["heavy"] == []
    pip_show = run([python, "-m", "pip", "show", "trainserve-client"])
    assert f"Version: {__version__}" in pip_show.stdout
