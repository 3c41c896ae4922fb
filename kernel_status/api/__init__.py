"""The HTTP layer: the endpoints and everything that is about HTTP rather than the mirror.

The views (status, events, listing), their pagination, response serializers, the JSON
renderer, permission classes, rate limits, conditional answers (ETags), the
``Marimo-Session-Id`` header, the body parser of a batch, and the OpenAPI documentation
(:mod:`kernel_status.api.openapi`). It reads through :mod:`kernel_status.queries` and writes
through :mod:`kernel_status.mirror`; nothing below it imports it. Hosts mount it with
``include("kernel_status.urls")``.
"""
