"""What the bridge asks a marimo 0.25 server over HTTP, and the websocket URL it attaches with."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx

__all__ = ["MarimoAPI", "MarimoUnavailable", "check_base_url"]

# marimo embeds it in its page; its API refuses requests without it (HTTP 401).
SERVER_TOKEN = re.compile(rb'"serverToken":\s*"([^"]+)"')


class MarimoUnavailable(Exception):
    """marimo did not answer usefully; trying again later may help."""


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

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 10.0) -> None:
        self.secure, self.netloc, self.path = check_base_url(url)
        self.token = token  # marimo's access token, when it runs with one
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(timeout=timeout, headers=headers)
        self._server_token: str | None = None

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
        for attempt in range(2):
            if self._server_token is None:
                self._server_token = await self._fetch_server_token()
            response = await self._request(
                "POST",
                "/api/home/running_notebooks",
                json={},
                headers={"Marimo-Server-Token": self._server_token},
            )
            if response.status_code == 401 and attempt == 0:
                self._server_token = None  # marimo restarted: its page has a new one
                continue
            if response.status_code != 200:
                raise MarimoUnavailable(
                    f"running_notebooks answered HTTP {response.status_code}: {response.text[:200]}"
                )
            return _sessions(response)
        raise AssertionError("unreachable")

    async def _fetch_server_token(self) -> str:
        response = await self._request("GET", "/")
        if response.status_code != 200:
            raise MarimoUnavailable(f"marimo's page answered HTTP {response.status_code}")
        match = SERVER_TOKEN.search(response.content)
        if match is None:
            raise MarimoUnavailable("marimo's page has no serverToken (not marimo 0.25?)")
        return match.group(1).decode()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._client.request(method, self._url(path), **kwargs)
        except httpx.HTTPError as error:
            raise MarimoUnavailable(f"{type(error).__name__}: {error}".strip()) from error

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
            f"running_notebooks answered an unexpected body: {error}"
        ) from error
