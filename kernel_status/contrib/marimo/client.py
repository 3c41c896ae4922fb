"""What kernel_status asks a marimo 0.25 server over HTTP, and the websocket URL it attaches with.

The one place that knows marimo's home endpoints, its server token and how it refuses: the
bridge lists sessions with :class:`MarimoAPI`, the culler lists and shuts them down through
:class:`MarimoHome`, a blocking facade over the same client.
"""

from __future__ import annotations

import asyncio
import json
import re
from types import TracebackType
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx

__all__ = ["MarimoAPI", "MarimoHome", "MarimoUnauthorized", "MarimoUnavailable", "check_base_url"]

# marimo embeds it in its page; its API refuses requests without it (HTTP 401).
SERVER_TOKEN = re.compile(rb'"serverToken":\s*"([^"]+)"')
SERVER_TOKEN_HEADER = "Marimo-Server-Token"
RUNNING_NOTEBOOKS = "/api/home/running_notebooks"
SHUTDOWN_SESSION = "/api/home/shutdown_session"
HEALTH = "/health"  # answered without the access token or the server token
# How marimo refuses a missing or wrong access token on its page: a redirect to its login
# page (303), or 401/403 from an auth proxy in front of it.
UNAUTHORIZED_PAGE = frozenset({303, 401, 403})


class MarimoUnavailable(Exception):
    """marimo did not answer usefully; trying again later may help."""


class MarimoUnauthorized(MarimoUnavailable):
    """marimo refuses the access token (wrong, or missing): trying again does not help until
    the token is fixed. A :class:`MarimoUnavailable`, so that callers that only tell success
    from failure (the culler) need no change."""


def check_base_url(url: str) -> tuple[bool, str, str]:
    """(secure, netloc, path) of marimo's base URL; ``ValueError`` if it is not one."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL of a marimo server.")
    if parts.query or parts.fragment:
        raise ValueError(f"{url!r}: give marimo's base URL, without a query or fragment.")
    return scheme == "https", parts.netloc, parts.path.rstrip("/")


class MarimoAPI:
    """One marimo server: its session list, and where to attach to a session."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        server_token: str | None = None,
    ) -> None:
        self.secure, self.netloc, self.path = check_base_url(url)
        self.token = token  # marimo's access token, when it runs with one
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(timeout=timeout, headers=headers)
        self._server_token: str | None = server_token
        # A server token the operator gave is used as is; only one read from the page is
        # read again when marimo refuses it (marimo restarted).
        self._reread_server_token = server_token is None

    def _url(self, path: str, *, websocket: bool = False, query: str = "") -> str:
        scheme = (
            ("wss" if self.secure else "ws") if websocket else ("https" if self.secure else "http")
        )
        return urlunsplit((scheme, self.netloc, self.path + path, query, ""))

    @property
    def base_url(self) -> str:
        return self._url("")

    def attach_url(self, attach_id: str, file_key: str, *, redact: bool = False) -> str:
        """Read-only attach: the bridge's own id, the notebook's file key, kiosk."""
        query: list[tuple[str, str]] = [
            ("session_id", attach_id),
            ("file", file_key),
            ("kiosk", "true"),
        ]
        if self.token:
            query.append(("access_token", "***" if redact else self.token))
        return self._url("/ws", websocket=True, query=urlencode(query))

    async def running_sessions(self) -> dict[str, str]:
        """``{session id: file key}`` of the sessions marimo runs now."""
        return await self._home(RUNNING_NOTEBOOKS, {})

    async def shutdown_session(self, session_id: str) -> dict[str, str]:
        """Close one session; marimo answers with the sessions it still runs."""
        # camelCase: marimo answers 400 to {"session_id": ...}.
        return await self._home(SHUTDOWN_SESSION, {"sessionId": session_id})

    async def _home(self, path: str, body: dict[str, Any]) -> dict[str, str]:
        """POST to a home endpoint, which answers with the running sessions."""
        for attempt in range(2):
            if self._server_token is None:
                self._server_token = await self._fetch_server_token()
            response = await self._request(
                "POST", path, json=body, headers={SERVER_TOKEN_HEADER: self._server_token}
            )
            if response.status_code == 401 and attempt == 0 and self._reread_server_token:
                self._server_token = None  # marimo restarted: its page has a new one
                continue
            if response.status_code == 403:
                raise MarimoUnauthorized(_refusal("POST", path, response))
            if response.status_code != 200:
                raise MarimoUnavailable(_refusal("POST", path, response))
            return _sessions(response)
        raise AssertionError("unreachable")

    async def _fetch_server_token(self) -> str:
        response = await self._request("GET", "/")
        if response.status_code in UNAUTHORIZED_PAGE:
            raise MarimoUnauthorized(_refusal("GET", "/", response))
        if response.status_code != 200:
            raise MarimoUnavailable(_refusal("GET", "/", response))
        match = SERVER_TOKEN.search(response.content)
        if match is None:
            raise MarimoUnavailable("marimo's page has no serverToken (not marimo 0.25?)")
        return match.group(1).decode()

    async def healthy(self, timeout: float) -> bool:
        """Whether marimo answers ``GET /health`` with 200 within ``timeout`` seconds: the
        cheap probe for marimo coming back (no page, no server token, no session list)."""
        try:
            response = await self._client.get(self._url(HEALTH), timeout=timeout)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._client.request(method, self._url(path), **kwargs)
        except httpx.HTTPError as error:
            raise MarimoUnavailable(
                f"marimo at {self.base_url} is unreachable: {type(error).__name__}: {error}".strip()
            ) from error

    async def aclose(self) -> None:
        await self._client.aclose()


def _sessions(response: httpx.Response) -> dict[str, str]:
    try:
        files = response.json()["files"]
        return {
            str(entry["sessionId"]): str(entry["path"])
            for entry in files
            if isinstance(entry, dict) and entry.get("sessionId") and entry.get("path")
        }
    except (ValueError, KeyError, TypeError) as error:
        raise MarimoUnavailable(
            f"POST {response.request.url.path} answered an unexpected body: {error!r}"
        ) from error


def _refusal(method: str, path: str, response: httpx.Response) -> str:
    """``POST /api/home/... answered 401: Missing server token``: marimo's own reason."""
    location = response.headers.get("location")
    if response.is_redirect and location:
        return f"{method} {path} answered {response.status_code}, a redirect to {location}"
    return f"{method} {path} answered {response.status_code}: {_reason(response.content)}"


def _reason(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body[:200].decode(errors="replace").strip() or "(empty body)"
    if isinstance(data, dict):
        for key in ("error", "detail", "message"):
            if isinstance(data.get(key), str):
                return str(data[key])
    return json.dumps(data)[:200]


class MarimoHome:
    """:class:`MarimoAPI`'s home endpoints for synchronous callers such as the culler.

    One event loop serves every call and runs only during a call, so the caller may use the
    Django ORM between calls. Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        server_token: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._api = MarimoAPI(url, token=token, server_token=server_token, timeout=timeout)
        self._runner = asyncio.Runner()
        self.base_url = self._api.base_url

    def running_sessions(self) -> dict[str, str]:
        """``{session id: file key}`` of the sessions marimo runs now."""
        return self._runner.run(self._api.running_sessions())

    def shutdown_session(self, session_id: str) -> dict[str, str]:
        """Close one session; ``{session id: file key}`` of those marimo still runs."""
        return self._runner.run(self._api.shutdown_session(session_id))

    def close(self) -> None:
        try:
            self._runner.run(self._api.aclose())
        finally:
            self._runner.close()

    def __enter__(self) -> MarimoHome:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
