"""The marimo sub-app's management commands (in ``commands/``): ``kernel_status_bridge`` runs
the bridge beside a marimo server, ``kernel_status_cull`` shuts down idle sessions."""
