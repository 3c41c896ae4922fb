"""Every read query of the mirror: the derived state, the access levels, the listing and the
status endpoint's compiled query.

Readers (the endpoints, the admin, the culler, a host's own views) build on these, so the state
and the access rule are each written once. ``SessionQuerySet`` in :mod:`kernel_status.models`
calls into this package; in turn, these queries know the models only through Django's app
registry (:func:`mirror_model`), never by import, so that imports run one way: from the models
down to the queries.
"""

from __future__ import annotations

from django.apps import apps
from django.db.models import Model


def mirror_model(name: str) -> type[Model]:
    """The kernel_status model called ``name`` ("Session", "CellStatus", "SessionAccess")."""
    return apps.get_model("kernel_status", name)
