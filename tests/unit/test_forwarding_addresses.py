"""``--address``/``-L`` of ``node exec``: ssh's ``[bind_address:]port:host:hostport``."""

from __future__ import annotations

import pytest

from batchai.cli.errors import CliError
from batchai.cli.forwarding import Forward, parse_address


@pytest.mark.parametrize(
    "text,forward",
    [
        ("6006:localhost:6006", Forward("127.0.0.1", 6006, "localhost", 6006)),
        ("0:127.0.0.1:80", Forward("127.0.0.1", 0, "127.0.0.1", 80)),
        ("0.0.0.0:9000:localhost:9001", Forward("0.0.0.0", 9000, "localhost", 9001)),
        ("[::1]:9000:[::1]:9001", Forward("::1", 9000, "::1", 9001)),
    ],
)
def test_an_address_names_a_local_port_and_a_port_of_the_node(text: str, forward: Forward) -> None:
    assert parse_address(text) == forward


@pytest.mark.parametrize("text", ["6006", "6006:6006", "a:localhost:1", "1:localhost:0", "70000:localhost:1", ""])
def test_anything_else_is_a_usage_error(text: str) -> None:
    with pytest.raises(CliError) as error:
        parse_address(text)
    assert error.value.exit_code == 2 and "[bind_address:]port:host:hostport" in error.value.message
