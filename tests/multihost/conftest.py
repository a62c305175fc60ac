"""Tests across hosts on one machine: each host a network namespace (tests/multihost/netns.py).
A failed test's report ends with the tail of every host's process logs."""

from collections.abc import Generator

import pytest

from tests.multihost.netns import HOST_LOGS


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    logs = item.stash.get(HOST_LOGS, None)
    if report.failed and logs is not None:
        report.sections.append(("the hosts' logs (tails)", logs()))
    return report
