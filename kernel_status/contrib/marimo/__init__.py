"""The marimo bridge: follows every session of a marimo server, read-only, into the mirror.

Add ``"kernel_status.contrib.marimo"`` to ``INSTALLED_APPS`` for the ``kernel_status_bridge``
command, and install the ``marimo`` extra (websockets, httpx). Nothing in the core app
imports this package.
"""
