"""What a tool name in a token may be: the MCP specification's rule, and no wildcard.

MCP specification 2025-11-25, server/tools, "Tool Names": 1 to 128 characters
(inclusive), case-sensitive, only A-Z a-z 0-9 underscore, hyphen and dot. The
spec says SHOULD; a token is a grant, so we make it MUST: a name outside the
rule (`*`, `search*`, a space, a slash) can never match a tool and is refused
when minting and when verifying. Same pattern as the SDK's
`mcp.shared.tool_name_validation.TOOL_NAME_REGEX`, kept here so the verifier
does not import the SDK.
"""

from __future__ import annotations

import re

TOOL_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")


def is_tool_name(name: object) -> bool:
    """True when `name` is a string the MCP spec allows as a tool name."""
    return isinstance(name, str) and TOOL_NAME.fullmatch(name) is not None
