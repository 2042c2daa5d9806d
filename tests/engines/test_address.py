"""Parsing of the addresses the user gives, and the TCP check against real sockets on 127.0.0.1."""

from __future__ import annotations

import socket

import pytest

from pipeline.engines.address import DASK_DEFAULT_PORT, Endpoint, check_reachable, parse_endpoint
from pipeline.errors import ClusterError


@pytest.mark.parametrize(
    "address, expected",
    [
        ("127.0.0.1:6379", Endpoint("127.0.0.1", 6379)),
        ("tcp://10.0.0.5:8786", Endpoint("10.0.0.5", 8786)),
        ("tls://scheduler.example:8786", Endpoint("scheduler.example", 8786)),
        ("ray://10.0.0.5:10001", Endpoint("10.0.0.5", 10001)),
        ("tcp://[::1]:8786", Endpoint("::1", 8786)),
        ("scheduler", Endpoint("scheduler", DASK_DEFAULT_PORT)),
        ("auto", None),
        ("inproc://10.0.0.5/123/1", None),
        ("ucx://10.0.0.5:13337", None),
    ],
)
def test_addresses_are_parsed_to_host_and_port(address, expected):
    assert parse_endpoint(address, DASK_DEFAULT_PORT) == expected


def test_loopback_and_a_bad_port():
    assert Endpoint("127.0.0.1", 1).loopback and Endpoint("localhost", 1).loopback and Endpoint("::1", 1).loopback
    assert not Endpoint("10.0.0.5", 1).loopback and not Endpoint("scheduler", 1).loopback
    assert str(Endpoint("::1", 8786)) == "[::1]:8786"
    with pytest.raises(ClusterError, match="not an address of the form host:port"):
        parse_endpoint("127.0.0.1:port", 6379)


def test_the_tcp_check_names_the_address():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        check_reachable(Endpoint("127.0.0.1", port), "the Ray cluster")  # listening: no error
    with pytest.raises(ClusterError) as refused:
        check_reachable(Endpoint("127.0.0.1", port), "the Ray cluster")
    assert (
        str(refused.value)
        == f"could not connect to the Ray cluster at 127.0.0.1:{port}: connection refused (is it running?)"
    )
