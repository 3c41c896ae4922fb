"""Letting go of the thread that Django's ASGI handler keeps for each request while it waits.

Django serves each ASGI request inside an asgiref ``ThreadSensitiveContext``. The request's
first thread-sensitive call (the ``request_started`` receivers, then each sync-capable
middleware) starts a one-thread executor for that request, and it lives until the request
ends. A blocking read or a stream that kept it would hold an idle thread, and its stack, for
the whole wait: 10,000 waiters, 10,000 threads. So a waiter shuts that executor down before it
waits. The next thread-sensitive call of the request (the middlewares' ``process_response``,
after the wake-up) starts a new one, which the handler ends with the request as before.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import SyncToAsync


def release_request_thread() -> bool:
    """Shut down the current request's own sync thread, if it has an idle one; ``True`` if
    it had. Call it from the event loop, between thread-sensitive calls (never while one
    runs). Without asgiref's per-context executors (a future asgiref), it does nothing."""
    context_var: Any = getattr(SyncToAsync, "thread_sensitive_context", None)
    executors: Any = getattr(SyncToAsync, "context_to_thread_executor", None)
    if context_var is None or executors is None:
        return False
    context = context_var.get(None)
    if context is None or getattr(context, "_executor", None) is not None:
        return False  # not in a request's context, or its executor is its owner's to keep
    executor = executors.pop(context, None)
    if executor is None:
        return False
    executor.shutdown(wait=False)  # idle: its thread ends at once, and the loop never blocks
    return True
