"""``manage.py kernel_status_bridge`` and ``manage.py kernel_status_cull``: one module per
command, as Django expects."""
