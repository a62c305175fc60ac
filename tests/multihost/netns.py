"""Hosts on one machine, for tests that cross hosts: each host is a network namespace (its own
loopback, and an address on a private bridge), a UTS namespace (its own hostname, so a worker's
node id names its host) and a mount namespace in which the other hosts' folders are empty.

PostgreSQL and Redis listen on the root namespace's loopback, which no host can reach (a
namespace's 127.0.0.1 is its own); a host reaches them only through forwarders that this
process runs on the bridge's address, the hosts' gateway. A service on a host of its own (the
S3 server) is forwarded the same way, so every connection goes between a host and the root
namespace, never from host to host across the bridge (where br_netfilter would put it through
the machine's iptables FORWARD chain, which a CI runner's docker may set to DROP).

Every name carries the owner's pid and a random suffix (`tsmh<pid:06x><4 hex>`), so parallel
runs never collide, and a run that was killed before its clean-up is cleaned up by the next
one: the namespaces (with what still runs in them) and links whose owner pid is gone are
removed at start (`stale` tells the tests' other resources of a dead run, e.g. databases).

Needs root, iproute2 and util-linux (`unavailable` says why not, for a skip)."""

import fcntl
import ipaddress
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.s3_support import FaultProxy

PREFIX = "tsmh"
SUBNETS = ipaddress.IPv4Network("10.231.0.0/16")  # one /24 of it per run
NETNS_DIR = Path("/run/netns")  # where `ip netns add` names namespaces
TOOLS = ("ip", "unshare", "mount", "hostname")
# A test stores here how to read its hosts' logs; a failed test's report ends with them.
HOST_LOGS = pytest.StashKey[Callable[[], str]]()
TAGGED = re.compile(rf"{PREFIX}-?(?P<tag>[0-9a-f]{{10}})")


class Failed(RuntimeError):
    """A step of building or removing the hosts failed; says which command and why."""


def ip(*args: str, check: bool = True) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if check and done.returncode != 0:
        raise Failed(f"`ip {' '.join(args)}` failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def unavailable() -> str | None:
    """Why network namespaces cannot be made here (not root, a tool missing, the kernel says
    no), or None: a namespace was made and removed."""
    if os.geteuid() != 0:
        return "network namespaces need root (this test runs as root in CI)"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"no {', '.join(missing)} on PATH (iproute2 / util-linux)"
    probe = f"{PREFIX}-{new_tag()}-probe"
    try:
        ip("netns", "add", probe)
    except Failed as exc:
        return f"cannot create a network namespace: {exc}"
    ip("netns", "del", probe)
    return None


def new_tag() -> str:
    """This run's tag: the owner's pid (pid_max is at most 2**22: six hex digits) and a
    random suffix; names with it fit Linux's 15 characters of an interface name."""
    return f"{os.getpid():06x}{secrets.token_hex(2)}"


def owner_alive(tag: str) -> bool:
    """Whether the process that made the run of this tag still runs."""
    try:
        os.kill(int(tag[:6], 16), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale(name: str) -> bool:
    """A name of a run of ours (it carries a tag) whose process is gone."""
    found = TAGGED.search(name)
    return found is not None and not owner_alive(found["tag"])


def remove_stale() -> list[str]:
    """Remove the namespaces (and what still runs in them) and links (bridges, veth ends)
    of runs whose process is gone; the names removed."""
    removed = []
    for line in ip("netns", "list").splitlines():
        name = line.split()[0] if line.strip() else ""
        if name.startswith(f"{PREFIX}-") and stale(name):
            _kill_inside(name)
            ip("netns", "del", name, check=False)
            removed.append(name)
    for line in ip("-o", "link", "show").splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith(PREFIX) and stale(name):
            ip("link", "del", name, check=False)
            removed.append(name)
    return removed


def _kill_inside(netns: str) -> None:
    """SIGKILL whatever still runs in the namespace (only processes of a run of ours)."""
    for pid in ip("netns", "pids", netns, check=False).split():
        with suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)


@dataclass
class Host:
    name: str  # its hostname
    netns: str
    address: str  # on the bridge
    folder: Path  # its own: DATA_DIR and anything else it keeps
    hidden: list[Path] = field(default_factory=list)  # the other hosts' folders: empty here

    def command(self, args: list[str]) -> list[str]:
        """`args` run on this host: in its network namespace, with its hostname, the other
        hosts' folders covered by an empty read-only tmpfs. Each wrapper execs the next, so
        the process started is the command's own (its pid, its process group)."""
        cover = "".join(
            f"mount -t tmpfs -o ro,size=4k {PREFIX}-hidden {shlex.quote(str(p))} && "
            for p in self.hidden
        )
        script = f'hostname {shlex.quote(self.name)} && {cover}exec "$@"'
        wrapper = ["unshare", "--uts", "--mount", "--propagation", "private"]
        return ["ip", "netns", "exec", self.netns, *wrapper, "sh", "-c", script, "sh", *args]


@dataclass
class Network:
    """A bridge with the root namespace's end at `gateway`, one namespace per host on it."""

    tag: str
    subnet: ipaddress.IPv4Network | None = None  # picked once the bridge is up
    hosts: dict[str, Host] = field(default_factory=dict)
    forwarders: list[FaultProxy] = field(default_factory=list)

    @property
    def bridge(self) -> str:
        return f"{PREFIX}{self.tag}"

    @property
    def gateway(self) -> str:
        return str(self._subnet.network_address + 1)

    @property
    def _subnet(self) -> ipaddress.IPv4Network:
        if self.subnet is None:
            raise Failed("the bridge has no subnet yet")
        return self.subnet

    def forward(self, upstream: tuple[str, int]) -> FaultProxy:
        """A forwarder on the gateway to a service on the root namespace's loopback (or on a
        host, so that hosts reach it through the root namespace too)."""
        forwarder = FaultProxy(upstream[1], bind=self.gateway, upstream_host=upstream[0])
        self.forwarders.append(forwarder)
        return forwarder

    def add_host(self, name: str, folder: Path) -> Host:
        index = len(self.hosts)
        netns, veth = f"{PREFIX}-{self.tag}-{name}", f"{self.bridge}{index}"
        address = str(self._subnet.network_address + 2 + index)
        ip("netns", "add", netns)
        self.hosts[name] = Host(name, netns, address, folder)
        ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
        ip("link", "set", veth, "master", self.bridge, "up")
        ip("-n", netns, "addr", "add", f"{address}/{self._subnet.prefixlen}", "dev", "eth0")
        ip("-n", netns, "link", "set", "eth0", "up")
        ip("-n", netns, "link", "set", "lo", "up")
        folder.mkdir(parents=True, exist_ok=True)
        for host in self.hosts.values():
            host.hidden = [h.folder for h in self.hosts.values() if h is not host]
        return self.hosts[name]

    def check_isolation(self) -> None:
        """Each host sees its own folder and none of the others' (a marker file in each)."""
        for host in self.hosts.values():
            (host.folder / ".host").write_text(host.name)
        for host in self.hosts.values():
            probe = "; ".join(
                f"cat {shlex.quote(str(h.folder / '.host'))}" for h in self.hosts.values()
            )
            done = subprocess.run(
                host.command(["sh", "-c", f"{probe}; true"]),
                capture_output=True,
                text=True,
                timeout=20,
            )
            if done.stdout != host.name:
                raise Failed(
                    f"host {host.name} sees {done.stdout!r} of the hosts' folders: {done.stderr}"
                )

    def teardown(self) -> None:
        """Forwarders closed, whatever still runs on a host killed, namespaces (and with them
        their veths) and the bridge removed; raises after trying every step if one failed."""
        for forwarder in self.forwarders:
            forwarder.close()
        problems = []
        for host in self.hosts.values():
            _kill_inside(host.netns)
            try:
                ip("netns", "del", host.netns)
            except Failed as exc:
                problems.append(str(exc))
        if ip("link", "show", self.bridge, check=False):
            try:
                ip("link", "del", self.bridge)
            except Failed as exc:
                problems.append(str(exc))
        if problems:
            raise Failed("; ".join(problems))


def _used_subnets() -> set[ipaddress.IPv4Network]:
    out = ip("-4", "-o", "addr", "show") + ip("-4", "route", "show", "table", "all", check=False)
    used = set()
    for word in out.split():
        with suppress(ValueError):
            net = ipaddress.ip_network(word, strict=False)
            if isinstance(net, ipaddress.IPv4Network) and net.overlaps(SUBNETS):
                used.add(net)
    return used


@contextmanager
def _netns_lock() -> Iterator[None]:
    """Held while a run picks its subnet and puts it on its bridge, so two runs never pick
    the same one (the lock is on the folder where `ip netns` names namespaces)."""
    NETNS_DIR.mkdir(exist_ok=True)
    fd = os.open(NETNS_DIR, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _bridge_up(net: Network) -> None:
    ip("link", "add", net.bridge, "type", "bridge")
    ip("link", "set", net.bridge, "up")
    with _netns_lock():
        used = _used_subnets()
        free = [s for s in SUBNETS.subnets(new_prefix=24) if not any(s.overlaps(u) for u in used)]
        if not free:
            raise Failed(f"no free /24 left in {SUBNETS}")
        net.subnet = free[secrets.randbelow(len(free))]
        ip("addr", "add", f"{net.gateway}/24", "dev", net.bridge)


@contextmanager
def network(tag: str) -> Iterator[Network]:
    """A fresh bridge and its subnet, its names tagged with `tag` (new_tag); add hosts with
    add_host. Everything is removed after, also when the body fails."""
    remove_stale()
    net = Network(tag)
    try:
        _bridge_up(net)
        yield net
    finally:
        net.teardown()
