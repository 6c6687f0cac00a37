"""Data-quality gates (Great Expectations Core 1.x, imported lazily inside the validate functions)."""

from absorb_sync.gates.export_gate import validate_export
from absorb_sync.gates.feed_gate import validate_feed
from absorb_sync.gates.runner import GateFailedError, GateResult

__all__ = ["GateFailedError", "GateResult", "validate_export", "validate_feed"]
