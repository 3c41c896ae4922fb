"""Settings of the benchmark servers: the example project with DEBUG off and its own URLconf.

The URLconf adds the two floors (constant-body views) beside the app's endpoints, so they run
in the same process, with the same middleware, as the status endpoint they are compared with.
Unlike the demo, it keeps the package's default liveness window, as a deployment would.
"""

from project.settings import *  # noqa: F403

DEBUG = False
ROOT_URLCONF = "benchmarks.urls"
del KERNEL_STATUS_LIVENESS_WINDOW  # noqa: F821 - the package default (60 s), as in production
