"""Test settings with the rate limits on and counted in Redis, for servers that tests start
(tests/api/test_hardening.py): ``KS_TEST_REDIS_URL``, ``KS_TEST_CACHE_PREFIX`` (one per
test, so parallel runs never share counts) and ``KS_TEST_THROTTLE_RATES`` (JSON)."""

import json
import os

from tests.settings import *  # noqa: F403
from tests.settings import REST_FRAMEWORK

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": os.environ["KS_TEST_REDIS_URL"],
        "KEY_PREFIX": os.environ["KS_TEST_CACHE_PREFIX"],
    }
}
REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_THROTTLE_RATES": json.loads(os.environ["KS_TEST_THROTTLE_RATES"]),
}
