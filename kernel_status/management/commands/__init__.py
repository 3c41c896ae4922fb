"""``manage.py kernel_status_reset``: one module per command, as Django expects."""
