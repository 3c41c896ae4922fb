from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "project.demo"
    label = "kernel_status_demo"
    verbose_name = "kernel_status demo data"
