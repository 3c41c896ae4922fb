from django.apps import AppConfig


class MarimoBridgeConfig(AppConfig):
    name = "kernel_status.contrib.marimo"
    label = "kernel_status_marimo"
    verbose_name = "kernel_status: marimo bridge"
