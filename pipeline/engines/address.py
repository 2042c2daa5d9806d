"""Addresses of attached clusters, checked with short timeouts before anything starts.

Neither engine bounds its own connection attempts well: Ray retried an address
that refused connections for over ten minutes, and a Dask client waits without
end for a port that accepts connections but never answers. So, before any engine
starts: one TCP connection to each address the user gave (refused at once, or no
answer within ``CONNECT_TIMEOUT_S``), and for Dask the handshake of its protocol.
Only the addresses the user gave are contacted.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from pipeline.errors import ClusterError

CONNECT_TIMEOUT_S = 5.0
RAY_DEFAULT_PORT = 6379
DASK_DEFAULT_PORT = 8786
_TCP_SCHEMES = {"", "tcp", "tls", "ray", "ws", "wss"}


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:  # a host name
            return False


def parse_endpoint(address: str, default_port: int) -> Endpoint | None:
    """``host:port`` of ``tcp://host:port``, ``host:port``, ``[::1]:port`` or ``host``;
    None for what is not a TCP address (Ray's ``auto``, Dask's ``inproc://``, ``ucx://``)."""
    scheme, sep, rest = address.strip().rpartition("://")
    if scheme.lower() not in _TCP_SCHEMES or (not sep and address.strip() in ("auto", "local")):
        return None
    rest = rest.split("/", 1)[0]
    if rest.startswith("["):  # [v6 address]:port
        host, _, port = rest[1:].partition("]")
        port = port.removeprefix(":")
    elif rest.count(":") == 1:
        host, port = rest.split(":")
    else:  # a bare host name, IPv4 or IPv6 address
        host, port = rest, ""
    if not host:
        return None
    try:
        return Endpoint(host, int(port) if port else default_port)
    except ValueError:
        raise ClusterError(f"{address!r} is not an address of the form host:port") from None


def check_reachable(endpoint: Endpoint, what: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """One TCP connection to ``endpoint``; ClusterError naming it when it cannot be made."""
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout):
            pass
    except ConnectionRefusedError:
        raise ClusterError(f"could not connect to {what} at {endpoint}: connection refused (is it running?)") from None
    except TimeoutError:
        raise ClusterError(f"could not connect to {what} at {endpoint}: no answer within {timeout:g} s") from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ClusterError(f"could not connect to {what} at {endpoint}: {reason}") from None


def check_dask_scheduler(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Dask's handshake with ``address`` within ``timeout``: a port that accepts connections
    but is not a Dask scheduler fails here instead of holding the client forever."""

    async def handshake() -> None:
        from distributed.comm import connect

        comm = await asyncio.wait_for(connect(address, timeout=timeout), timeout)
        await comm.close()

    # In a thread of its own: the caller may already run an event loop (a notebook).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dask-handshake") as pool:
        try:
            pool.submit(asyncio.run, handshake()).result()
        except (OSError, TimeoutError, ValueError, EOFError) as exc:
            detail = f"no Dask handshake within {timeout:g} s" if isinstance(exc, TimeoutError) else str(exc)
            raise ClusterError(
                f"could not connect to the Dask scheduler at {address}: {detail} (is it a Dask scheduler?)"
            ) from None
