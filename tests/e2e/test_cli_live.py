"""The live view of `trainserve jobs submit --follow` in a real terminal (a pseudo-terminal of
fixed size, via pexpect): the rich progress bar is drawn and redrawn, the command exits with
the job's outcome, and Ctrl-C stops the following, not the job."""

import io
import json
import re
import secrets
import subprocess
from typing import Any

import pexpect

from tests.e2e.conftest import CliStack
from tests.support import BIN, seed_spec, wait_until

BAR = "━"  # rich's bar character
# Rich redraws the live area in place: it erases the lines of the last drawing first.
ERASE_LINE = "\x1b[2K"


def spec_file(stack: CliStack, name: str, epochs: int) -> str:
    spec = seed_spec(name, epochs=epochs)
    spec["model"]["hidden"] = [16]
    path = stack.workdir / f"live-{secrets.token_hex(3)}.json"
    path.write_text(json.dumps(spec))
    return str(path)


def terminal(stack: CliStack, *args: str) -> tuple[pexpect.spawn, io.StringIO]:
    env = stack.client_env(TERM="xterm-256color")
    for name in ("COLUMNS", "LINES", "NO_COLOR", "TERM_PROGRAM"):
        env.pop(name, None)
    child = pexpect.spawn(
        str(BIN),
        list(args),
        env=env,
        cwd=str(stack.workdir),
        dimensions=(30, 120),
        encoding="utf-8",
        timeout=90,
    )
    seen = io.StringIO()
    child.logfile_read = seen
    return child, seen


def job_status(stack: CliStack, job_id: str) -> Any:
    return stack.api().job(job_id)["status"]


def test_follow_draws_a_progress_bar_and_exits_0(cli_stack: CliStack) -> None:
    child, seen = terminal(
        cli_stack, "jobs", "submit", spec_file(cli_stack, "live-digits", 3), "--follow"
    )
    child.expect("running")
    child.expect(r"epoch 1  step \d+")
    child.expect(r"job \S+ succeeded: model live-digits version 1")
    child.expect(pexpect.EOF)
    child.close()
    out = seen.getvalue()
    assert child.exitstatus == 0, out
    bars = re.findall(rf"{BAR}+.*?epoch (\d)/3", out)
    assert len(bars) >= 3 and bars[-1] == "3", out  # drawn again as the job went on
    assert out.count(ERASE_LINE) >= 2, out
    assert "\x1b[" in out  # colors and cursor moves: rich saw a terminal


def test_ctrl_c_stops_following_and_a_cancel_ends_follow_with_3(cli_stack: CliStack) -> None:
    child, seen = terminal(
        cli_stack, "jobs", "submit", spec_file(cli_stack, "live-long", 300), "-f"
    )
    child.expect(r"epoch 1  step \d+")
    child.sendintr()
    child.expect(r"stopped following job (\S+); it goes on")
    job_id = child.match.group(1)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130, seen.getvalue()
    assert f"trainserve jobs follow {job_id}" in seen.getvalue()
    assert job_status(cli_stack, job_id) == "running"

    following = subprocess.Popen(
        [str(BIN), "jobs", "follow", job_id],
        env=cli_stack.client_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: cli_stack.api().job(job_id)["progress"]["epoch"] >= 2, 60, "epoch 2")
        assert following.poll() is None  # still following the running job
        cancelled = cli_stack.run("jobs", "cancel", job_id)
        assert cancelled.returncode == 0, cancelled.stderr
        out, err = following.communicate(timeout=60)
    finally:
        following.kill()
    assert following.returncode == 3, (out, err)
    assert f"job {job_id} cancelled" in out
    assert "Traceback" not in err
