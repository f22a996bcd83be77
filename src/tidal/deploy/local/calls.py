"""A call to a service's scoring URI, as ``tidal service call`` and ``Webservice.run`` make it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from tidal.deploy.errors import ServiceError
from tidal.deploy.local.records import ServiceInfo

__all__ = ["call"]

_CALL_TIMEOUT_S = 600


def call(info: ServiceInfo, input_data: str | bytes | object, key: str | None) -> object:
    """POST ``input_data`` (bytes as-is, a string as JSON text, anything else JSON-encoded)
    with ``key`` when the service checks keys; the decoded JSON answer, else its text."""
    body, kind = _body(input_data)
    request = urllib.request.Request(
        info.scoring_uri, data=body, method="POST", headers={"Content-Type": kind}
    )
    if info.auth_enabled and key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=_CALL_TIMEOUT_S) as response:
            answer = response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", errors="replace")
        raise ServiceError(
            "failed", f"service '{info.name}' answered {exc.code}: {detail}"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        raise ServiceError("failed", f"cannot reach service '{info.name}': {exc}") from None
    try:
        return json.loads(answer)
    except ValueError:
        return answer.decode("utf-8", errors="replace")


def _body(input_data: str | bytes | object) -> tuple[bytes, str]:
    if isinstance(input_data, bytes):
        return input_data, "application/octet-stream"
    if isinstance(input_data, str):
        return input_data.encode("utf-8"), "application/json"
    return json.dumps(input_data).encode("utf-8"), "application/json"
