"""The few responses our ASGI layers write themselves (everything else is the SDK's)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from starlette.types import Send

Header = tuple[bytes, bytes]


async def send_json(
    send: Send, status: int, payload: object, *, headers: Sequence[Header] = ()
) -> None:
    """A complete `application/json` response."""
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


def jsonrpc_error(request_id: object, code: int, message: str) -> dict[str, object]:
    """A JSON-RPC error response; an id that is not a string or integer becomes null."""
    if not isinstance(request_id, str | int) or isinstance(request_id, bool):
        request_id = None
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}
