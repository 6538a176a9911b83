"""The wire format shared by the server and the client: one JSON object per line.

Request:  {"method": "status", "params": {...}}
Response: {"ok": true, "result": {...}}  or  {"ok": false, "error": "...", "hint": "..."}
"""

import json
from typing import Any

MAX_LINE = 64 * 1024  # a request or a response; requests are tiny, responses a status
GROUP = "imgvault"


class ProtocolError(ValueError):
    """A line that is not one JSON object of the expected shape."""


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    if len(line) > MAX_LINE or not line.endswith(b"\n"):
        raise ProtocolError(f"not one line of at most {MAX_LINE} bytes")
    try:
        message = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ProtocolError(f"not JSON: {error}") from None
    if not isinstance(message, dict):
        raise ProtocolError("not a JSON object")
    return message
