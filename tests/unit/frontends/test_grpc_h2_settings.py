"""The ``grpc_transport`` setting (``--grpc-transport``, ``TIDAL_GRPC_TRANSPORT``)."""

from __future__ import annotations

import pytest

from tidal.config import ServerSettings


def test_the_default_transport_is_tidal():
    assert ServerSettings().grpc_transport == "tidal"


def test_transport_names_are_normalised():
    assert ServerSettings(grpc_transport=" AIO ").grpc_transport == "aio"


def test_an_unknown_transport_is_refused():
    with pytest.raises(ValueError, match="--grpc-transport must be one of tidal, aio"):
        ServerSettings(grpc_transport="grpcio")
