"""Hosts for a test: network namespaces joined to this one by veth pairs, nothing else.

Each host is a namespace of its own with one veth pair and a /30 subnet; it has no
other route, so the only addresses it reaches are the root side of its pair. The
services the test uses listen on 127.0.0.1 only, which no namespace can reach: a
forwarder in this process listens on each pair's root side and relays to them.

A forwarder rather than iptables DNAT with ``route_localnet``: after DNAT the client
address is still the namespace's, and PostgreSQL's ``pg_hba.conf`` trusts loopback
clients only (RabbitMQ lets its guest user in from loopback only too). A relayed
connection comes from 127.0.0.1, as every other client of these services does, and
the root namespace's firewall and sysctls are left alone.

Needs root and iproute2 (``ip netns``); :func:`require_namespaces` skips a test
without them, or fails it under ``SANDBOX_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import random
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from tests.services import unavailable

# Subnets are drawn from here, away from what the machine routes already.
SUBNETS = ipaddress.ip_network("10.200.0.0/14")
PREFIX = 30
RELAY_CHUNK = 1 << 16


@dataclass(frozen=True)
class NetworkHost:
    """A namespace standing for one machine, and how it reaches the root namespace."""

    name: str
    namespace: str
    root_interface: str
    # The root side of the pair: where the host finds the services.
    root_address: str
    address: str

    def command(self, argv: Sequence[str], *, hostname: str) -> list[str]:
        """``argv`` run in the namespace under a host name of its own (a UTS namespace),
        as ``socket.gethostname()`` tells hosts apart. Each step execs the next, so the
        process started is ``argv`` itself."""
        return [
            "ip",
            "netns",
            "exec",
            self.namespace,
            "unshare",
            "--uts",
            "sh",
            "-c",
            'hostname "$0" && exec "$@"',
            hostname,
            *argv,
        ]


def require_namespaces() -> None:
    """Skip the calling test (fail it when services are required) unless it may make
    network namespaces and UTS namespaces here."""
    if os.geteuid() != 0:
        unavailable("network namespaces", "the test must run as root")
    for program in ("ip", "unshare"):
        if shutil.which(program) is None:
            unavailable("network namespaces", f"{program} is not installed (iproute2, util-linux)")
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        unavailable("network namespaces", f"ip netns: {probe.stderr.strip()}")


@contextmanager
def network_hosts(
    names: Sequence[str], *, forward: Sequence[int]
) -> Iterator[dict[str, NetworkHost]]:
    """Hosts ``names``, each reaching 127.0.0.1:``port`` of this namespace at its root
    address and the same port, for each port in ``forward``. Namespaces, veth pairs and
    forwarders are removed on the way out, whatever happened."""
    run_id = uuid.uuid4().hex[:6]
    with ExitStack() as stack:
        relay = stack.enter_context(Forwarder())
        hosts: dict[str, NetworkHost] = {}
        subnets = _free_subnets(len(names))
        for index, (name, subnet) in enumerate(zip(names, subnets, strict=True)):
            root_address, address = (str(a) for a in list(subnet.hosts())[:2])
            host = NetworkHost(
                name=name,
                namespace=f"sandbox-test-{run_id}-{index}",
                root_interface=f"sbx{run_id}{index}",
                root_address=root_address,
                address=address,
            )
            stack.callback(_remove_host, host)
            _add_host(host)
            for port in forward:
                relay.forward((root_address, port), ("127.0.0.1", port))
            hosts[name] = host
        yield hosts


def _add_host(host: NetworkHost) -> None:
    ns = host.namespace
    for argv in (
        ["ip", "netns", "add", ns],
        # The peer is made inside the namespace: it is the host's only interface.
        ["ip", "link", "add", host.root_interface, "type", "veth", "peer", "name", "eth0"]
        + ["netns", ns],
        ["ip", "addr", "add", f"{host.root_address}/{PREFIX}", "dev", host.root_interface],
        ["ip", "link", "set", host.root_interface, "up"],
        ["ip", "-n", ns, "addr", "add", f"{host.address}/{PREFIX}", "dev", "eth0"],
        ["ip", "-n", ns, "link", "set", "eth0", "up"],
        ["ip", "-n", ns, "link", "set", "lo", "up"],
    ):
        _ip(argv)


def _remove_host(host: NetworkHost) -> None:
    # Deleting the namespace deletes its end of the pair, and with it the root end.
    if host.namespace in _ip(["ip", "netns", "list"]).split():
        _ip(["ip", "netns", "delete", host.namespace])
    if _ip(["ip", "-o", "link", "show"]).count(f" {host.root_interface}:"):
        _ip(["ip", "link", "delete", host.root_interface])


def _ip(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise NamespaceError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return done.stdout


class NamespaceError(RuntimeError):
    """A namespace or link could not be set up or removed."""


def _free_subnets(count: int) -> list[ipaddress.IPv4Network]:
    """``count`` random /30s of SUBNETS that overlap no route of any table here (another
    test run's hosts included)."""
    routes = json.loads(_ip(["ip", "-j", "-4", "route", "show", "table", "all"]) or "[]")
    taken = [
        ipaddress.ip_network(route["dst"], strict=False)
        for route in routes
        if route.get("dst") not in (None, "default")
    ]
    choices = random.SystemRandom()
    found: list[ipaddress.IPv4Network] = []
    while len(found) < count:
        base = int(SUBNETS.network_address) + choices.randrange(SUBNETS.num_addresses >> 2) * 4
        subnet = ipaddress.IPv4Network((base, PREFIX))
        if not any(subnet.overlaps(other) for other in [*taken, *found]):
            found.append(subnet)
    return found


class Forwarder:
    """TCP relays in a thread of this process, each from an address and port to another.

    A relayed connection ends as soon as either side ends it, so a killed client's
    connections to the broker and the database end with it, as they would on a network.
    """

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="netns-relay")
        self._servers: list[asyncio.Server] = []
        self._connections: set[asyncio.Task[None]] = set()

    def __enter__(self) -> Forwarder:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()

    def forward(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        """Relay connections to ``listen`` to ``target`` until the forwarder closes."""
        started = asyncio.run_coroutine_threadsafe(self._listen(listen, target), self._loop)
        self._servers.append(started.result(timeout=10))

    async def _listen(self, listen: tuple[str, int], target: tuple[str, int]) -> asyncio.Server:
        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._connections.add(task)
            try:
                await self._relay(reader, writer, target)
            finally:
                self._connections.discard(task)

        return await asyncio.start_server(accepted, *listen, reuse_address=True)

    async def _relay(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: tuple[str, int]
    ) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*target)
        except OSError:
            # The service is down: the client sees its connection closed, as it would
            # see it refused.
            writer.close()
            await _closed(writer)
            return
        await asyncio.gather(
            _pipe(reader, upstream_writer, writer), _pipe(upstream_reader, writer, upstream_writer)
        )

    async def _close(self) -> None:
        for server in self._servers:
            server.close()
        # Connections first: from Python 3.12 on, wait_closed waits for them.
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, other: asyncio.StreamWriter
) -> None:
    """Copy until either side ends; then end both, as one connection."""
    try:
        # A reset ends the relay exactly as an end of stream does.
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(RELAY_CHUNK):
                writer.write(chunk)
                await writer.drain()
    finally:
        for side in (writer, other):
            side.close()
        await _closed(writer)
        await _closed(other)


async def _closed(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):  # closed by a reset: closed all the same
        await writer.wait_closed()
