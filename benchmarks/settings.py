"""Settings of the benchmark servers: the example project with DEBUG off and its own URLconf.

The URLconf adds the two floors (constant-body views) beside the app's endpoints, so they run
in the same process, with the same middleware, as the status endpoint they are compared with.
Unlike the demo, it keeps the package's default liveness window, as a deployment would.
"""

from kernel_status.throttle_rates import NO_THROTTLES
from project.settings import *  # noqa: F403

DEBUG = False
ROOT_URLCONF = "benchmarks.urls"
del KERNEL_STATUS_LIVENESS_WINDOW  # noqa: F821 - the package default (60 s), as in production

if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":  # noqa: F405
    # Recommended in production (docs/performance.md): lets kernel_status prepare its status
    # query, which PostgreSQL otherwise plans again on every request. Django's own queries
    # keep client-side binding and are not prepared.
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 5  # noqa: F405

# No rate limits: a load generator is one user on one IP, and would be throttled within a
# second (docs/deployment.md, "Rate limits"). The throttles' own cost is not measured here.
REST_FRAMEWORK = {
    **REST_FRAMEWORK,  # noqa: F405
    "DEFAULT_THROTTLE_RATES": NO_THROTTLES,
}
