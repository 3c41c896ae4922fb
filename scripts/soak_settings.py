"""Settings of the soak test (scripts/soak.py): the example project without rate limits."""

from kernel_status.throttle_rates import NO_THROTTLES
from project.settings import *  # noqa: F403
from project.settings import REST_FRAMEWORK

REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_THROTTLE_RATES": NO_THROTTLES,
}
