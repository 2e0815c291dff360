"""JSON records as every phylovi output writes them."""

from __future__ import annotations

import json
import math


def to_json(record) -> str:
    """``record`` as JSON, with infinities and NaN written as null (strict JSON has no
    -Infinity, and jq, R and JavaScript reject it)."""
    def finite(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {key: finite(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [finite(item) for item in value]
        return value

    return json.dumps(finite(record), indent=2, allow_nan=False)
