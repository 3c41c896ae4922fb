"""Settings of the fault-injection suite (scripts/faults.py): the production settings, with
the rate limits from ``KS_FAULTS_THROTTLE_RATES`` (JSON; every limit off when unset) and the
cache key prefix from ``DJANGO_CACHE_KEY_PREFIX`` (one per run, on the suite's Redis db)."""

import json
import os

from kernel_status.throttle_rates import NO_THROTTLES
from project.settings_production import *  # noqa: F403
from project.settings_production import REST_FRAMEWORK

_rates = os.environ.get("KS_FAULTS_THROTTLE_RATES")
REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_THROTTLE_RATES": json.loads(_rates) if _rates else NO_THROTTLES,
}
# The suite talks to gunicorn directly, as a proxy that ended TLS would (X-Forwarded-Proto).
REST_FRAMEWORK["NUM_PROXIES"] = 0
# To measure without the breaker (0) or with another cooldown: scripts/faults.py --cooldown.
if os.environ.get("KS_FAULTS_COOLDOWN"):
    KERNEL_STATUS_DATABASE_COOLDOWN = float(os.environ["KS_FAULTS_COOLDOWN"])
