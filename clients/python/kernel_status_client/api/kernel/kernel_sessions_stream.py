from http import HTTPStatus
from typing import Any

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.kernel_session_event import KernelSessionEvent
from ...models.kernel_sessions_stream_state import KernelSessionsStreamState
from ...models.kernel_status_error import KernelStatusError
from ...types import UNSET, Response, Unset


def _get_kwargs(
    *,
    idle_for: float | Unset = UNSET,
    state: KernelSessionsStreamState | Unset = UNSET,
    last_event_id: str | Unset = UNSET,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    if not isinstance(last_event_id, Unset):
        headers["Last-Event-ID"] = last_event_id

    params: dict[str, Any] = {}

    params["idle_for"] = idle_for

    json_state: str | Unset = UNSET
    if not isinstance(state, Unset):
        json_state = state.value

    params["state"] = json_state

    params = {k: v for k, v in params.items() if v is not UNSET and v is not None}

    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/api/kernel/sessions/stream",
        "params": params,
    }

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> KernelSessionEvent | KernelStatusError | None:
    if response.status_code == 200:
        response_200 = KernelSessionEvent.from_dict(response.text)

        return response_200

    if response.status_code == 400:
        response_400 = KernelStatusError.from_dict(response.json())

        return response_400

    if response.status_code == 401:
        response_401 = KernelStatusError.from_dict(response.json())

        return response_401

    if response.status_code == 429:
        response_429 = KernelStatusError.from_dict(response.json())

        return response_429

    if response.status_code == 501:
        response_501 = KernelStatusError.from_dict(response.json())

        return response_501

    if response.status_code == 503:
        response_503 = KernelStatusError.from_dict(response.json())

        return response_503

    if client.raise_on_unexpected_status:
        raise errors.UnexpectedStatus(response.status_code, response.content)
    else:
        return None


def _build_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Response[KernelSessionEvent | KernelStatusError]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    *,
    client: AuthenticatedClient,
    idle_for: float | Unset = UNSET,
    state: KernelSessionsStreamState | Unset = UNSET,
    last_event_id: str | Unset = UNSET,
) -> Response[KernelSessionEvent | KernelStatusError]:
    """A stream of the state changes of the caller's sessions (Server-Sent Events)

     Server-Sent Events for the sessions that `GET /api/kernel/sessions` lists for the caller, under the
    same filters. First a snapshot: one `status` event per session, then `ready`; then one `status`
    event per change of a session's entry, and one `removed` event when a session that was sent leaves
    the caller's view (deleted, access revoked, filtered out). Every event has an `id:`; reconnect with
    `Last-Event-ID` to have every session changed since replayed, or, when that is too old, a `reset`
    event and a fresh snapshot. A `: heartbeat` comment comes at least every 15 seconds. A client too
    slow to read is sent `reconnect` and the stream ends; a server shutting down does the same. Each
    event's `data` is JSON, described by the `KernelSessionEvent` component (the stream itself is
    `text/event-stream`). Needs an ASGI server: under WSGI the answer is 501.

    Args:
        idle_for (float | Unset):
        state (KernelSessionsStreamState | Unset):
        last_event_id (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[KernelSessionEvent | KernelStatusError]
    """

    kwargs = _get_kwargs(
        idle_for=idle_for,
        state=state,
        last_event_id=last_event_id,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    *,
    client: AuthenticatedClient,
    idle_for: float | Unset = UNSET,
    state: KernelSessionsStreamState | Unset = UNSET,
    last_event_id: str | Unset = UNSET,
) -> KernelSessionEvent | KernelStatusError | None:
    """A stream of the state changes of the caller's sessions (Server-Sent Events)

     Server-Sent Events for the sessions that `GET /api/kernel/sessions` lists for the caller, under the
    same filters. First a snapshot: one `status` event per session, then `ready`; then one `status`
    event per change of a session's entry, and one `removed` event when a session that was sent leaves
    the caller's view (deleted, access revoked, filtered out). Every event has an `id:`; reconnect with
    `Last-Event-ID` to have every session changed since replayed, or, when that is too old, a `reset`
    event and a fresh snapshot. A `: heartbeat` comment comes at least every 15 seconds. A client too
    slow to read is sent `reconnect` and the stream ends; a server shutting down does the same. Each
    event's `data` is JSON, described by the `KernelSessionEvent` component (the stream itself is
    `text/event-stream`). Needs an ASGI server: under WSGI the answer is 501.

    Args:
        idle_for (float | Unset):
        state (KernelSessionsStreamState | Unset):
        last_event_id (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        KernelSessionEvent | KernelStatusError
    """

    return sync_detailed(
        client=client,
        idle_for=idle_for,
        state=state,
        last_event_id=last_event_id,
    ).parsed


async def asyncio_detailed(
    *,
    client: AuthenticatedClient,
    idle_for: float | Unset = UNSET,
    state: KernelSessionsStreamState | Unset = UNSET,
    last_event_id: str | Unset = UNSET,
) -> Response[KernelSessionEvent | KernelStatusError]:
    """A stream of the state changes of the caller's sessions (Server-Sent Events)

     Server-Sent Events for the sessions that `GET /api/kernel/sessions` lists for the caller, under the
    same filters. First a snapshot: one `status` event per session, then `ready`; then one `status`
    event per change of a session's entry, and one `removed` event when a session that was sent leaves
    the caller's view (deleted, access revoked, filtered out). Every event has an `id:`; reconnect with
    `Last-Event-ID` to have every session changed since replayed, or, when that is too old, a `reset`
    event and a fresh snapshot. A `: heartbeat` comment comes at least every 15 seconds. A client too
    slow to read is sent `reconnect` and the stream ends; a server shutting down does the same. Each
    event's `data` is JSON, described by the `KernelSessionEvent` component (the stream itself is
    `text/event-stream`). Needs an ASGI server: under WSGI the answer is 501.

    Args:
        idle_for (float | Unset):
        state (KernelSessionsStreamState | Unset):
        last_event_id (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[KernelSessionEvent | KernelStatusError]
    """

    kwargs = _get_kwargs(
        idle_for=idle_for,
        state=state,
        last_event_id=last_event_id,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    *,
    client: AuthenticatedClient,
    idle_for: float | Unset = UNSET,
    state: KernelSessionsStreamState | Unset = UNSET,
    last_event_id: str | Unset = UNSET,
) -> KernelSessionEvent | KernelStatusError | None:
    """A stream of the state changes of the caller's sessions (Server-Sent Events)

     Server-Sent Events for the sessions that `GET /api/kernel/sessions` lists for the caller, under the
    same filters. First a snapshot: one `status` event per session, then `ready`; then one `status`
    event per change of a session's entry, and one `removed` event when a session that was sent leaves
    the caller's view (deleted, access revoked, filtered out). Every event has an `id:`; reconnect with
    `Last-Event-ID` to have every session changed since replayed, or, when that is too old, a `reset`
    event and a fresh snapshot. A `: heartbeat` comment comes at least every 15 seconds. A client too
    slow to read is sent `reconnect` and the stream ends; a server shutting down does the same. Each
    event's `data` is JSON, described by the `KernelSessionEvent` component (the stream itself is
    `text/event-stream`). Needs an ASGI server: under WSGI the answer is 501.

    Args:
        idle_for (float | Unset):
        state (KernelSessionsStreamState | Unset):
        last_event_id (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        KernelSessionEvent | KernelStatusError
    """

    return (
        await asyncio_detailed(
            client=client,
            idle_for=idle_for,
            state=state,
            last_event_id=last_event_id,
        )
    ).parsed
