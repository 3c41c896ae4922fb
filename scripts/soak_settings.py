"""Settings of the soak test (scripts/soak.py): the example project without rate limits."""

from project.settings import *  # noqa: F403
from project.settings import REST_FRAMEWORK

REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_THROTTLE_RATES": {
        "kernel_status.status": None,
        "kernel_status.events": None,
        "kernel_status.sessions": None,
        "kernel_status.failed_auth": None,
    },
}
