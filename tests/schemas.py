"""JSON Schemas shared by tests of several modules."""

from __future__ import annotations

from typing import Any

# Required keys to spell out beside optional ones, nested: the case a bounded completion search
# missed (the exact shortest completion must name "version" and "user" with its "roles" and "id").
REQUIRED_BESIDE_OPTIONAL: dict[str, Any] = {
    "type": "object",
    "properties": {
        "user": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "nick": {"type": "string"},
                "roles": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            },
            "required": ["id", "roles"],
        },
        "meta": {"type": "object"},
        "version": {"type": "string"},
    },
    "required": ["user", "version"],
}
