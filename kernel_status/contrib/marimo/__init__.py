"""The marimo integration: the bridge follows every session of a marimo server, read-only,
into the mirror; the culler shuts down the sessions the mirror shows idle for too long.

Add ``"kernel_status.contrib.marimo"`` to ``INSTALLED_APPS`` for the ``kernel_status_bridge``
and ``kernel_status_cull`` commands, and install the ``marimo`` extra (websockets, httpx).
Nothing in the core app imports this package.
"""
