"""Is my kernel busy? Answers ``GET /api/kernel/status`` from a mirror of notebook sessions."""

from __future__ import annotations

__version__ = "0.1.0"
