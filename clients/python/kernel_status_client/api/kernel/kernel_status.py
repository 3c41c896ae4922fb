from http import HTTPStatus
from typing import Any, cast

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.kernel_status_error import KernelStatusError
from ...models.kernel_status_response import KernelStatusResponse
from ...types import UNSET, Response, Unset


def _get_kwargs(
    *,
    if_none_match: str | Unset = UNSET,
    marimo_session_id: str,
    prefer: str | Unset = UNSET,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    if not isinstance(if_none_match, Unset):
        headers["If-None-Match"] = if_none_match

    headers["Marimo-Session-Id"] = marimo_session_id

    if not isinstance(prefer, Unset):
        headers["Prefer"] = prefer

    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/api/kernel/status",
    }

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Any | KernelStatusError | KernelStatusResponse | None:
    if response.status_code == 200:
        response_200 = KernelStatusResponse.from_dict(response.json())

        return response_200

    if response.status_code == 304:
        response_304 = cast(Any, None)
        return response_304

    if response.status_code == 400:
        response_400 = KernelStatusError.from_dict(response.json())

        return response_400

    if response.status_code == 401:
        response_401 = KernelStatusError.from_dict(response.json())

        return response_401

    if response.status_code == 403:
        response_403 = KernelStatusError.from_dict(response.json())

        return response_403

    if response.status_code == 404:
        response_404 = KernelStatusError.from_dict(response.json())

        return response_404

    if response.status_code == 405:
        response_405 = KernelStatusError.from_dict(response.json())

        return response_405

    if response.status_code == 429:
        response_429 = KernelStatusError.from_dict(response.json())

        return response_429

    if response.status_code == 503:
        response_503 = KernelStatusError.from_dict(response.json())

        return response_503

    if client.raise_on_unexpected_status:
        raise errors.UnexpectedStatus(response.status_code, response.content)
    else:
        return None


def _build_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Response[Any | KernelStatusError | KernelStatusResponse]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    *,
    client: AuthenticatedClient,
    if_none_match: str | Unset = UNSET,
    marimo_session_id: str,
    prefer: str | Unset = UNSET,
) -> Response[Any | KernelStatusError | KernelStatusResponse]:
    """Is this session's kernel busy?

     Derived state of the kernel of the session named by the `Marimo-Session-Id` header. Requires edit
    access to that session. Successful answers carry an `ETag` (a hash of the body: it changes exactly
    when the body changes) and `Cache-Control: private, no-cache`; send the tag back in `If-None-Match`
    to get 304 with no body while nothing changed. Permission is checked first, so a caller without
    access gets the 401, 403 or 404, never a 304. Errors carry `Cache-Control: no-store`. With `If-None-
    Match` and `Prefer: wait=N`, under an ASGI server, the read blocks until the answer changes or N
    seconds pass (a long poll): permission is checked before the wait and again when it ends, and a
    liveness expiry during the wait answers `stopped`.

    Args:
        if_none_match (str | Unset):
        marimo_session_id (str):
        prefer (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Any | KernelStatusError | KernelStatusResponse]
    """

    kwargs = _get_kwargs(
        if_none_match=if_none_match,
        marimo_session_id=marimo_session_id,
        prefer=prefer,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    *,
    client: AuthenticatedClient,
    if_none_match: str | Unset = UNSET,
    marimo_session_id: str,
    prefer: str | Unset = UNSET,
) -> Any | KernelStatusError | KernelStatusResponse | None:
    """Is this session's kernel busy?

     Derived state of the kernel of the session named by the `Marimo-Session-Id` header. Requires edit
    access to that session. Successful answers carry an `ETag` (a hash of the body: it changes exactly
    when the body changes) and `Cache-Control: private, no-cache`; send the tag back in `If-None-Match`
    to get 304 with no body while nothing changed. Permission is checked first, so a caller without
    access gets the 401, 403 or 404, never a 304. Errors carry `Cache-Control: no-store`. With `If-None-
    Match` and `Prefer: wait=N`, under an ASGI server, the read blocks until the answer changes or N
    seconds pass (a long poll): permission is checked before the wait and again when it ends, and a
    liveness expiry during the wait answers `stopped`.

    Args:
        if_none_match (str | Unset):
        marimo_session_id (str):
        prefer (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Any | KernelStatusError | KernelStatusResponse
    """

    return sync_detailed(
        client=client,
        if_none_match=if_none_match,
        marimo_session_id=marimo_session_id,
        prefer=prefer,
    ).parsed


async def asyncio_detailed(
    *,
    client: AuthenticatedClient,
    if_none_match: str | Unset = UNSET,
    marimo_session_id: str,
    prefer: str | Unset = UNSET,
) -> Response[Any | KernelStatusError | KernelStatusResponse]:
    """Is this session's kernel busy?

     Derived state of the kernel of the session named by the `Marimo-Session-Id` header. Requires edit
    access to that session. Successful answers carry an `ETag` (a hash of the body: it changes exactly
    when the body changes) and `Cache-Control: private, no-cache`; send the tag back in `If-None-Match`
    to get 304 with no body while nothing changed. Permission is checked first, so a caller without
    access gets the 401, 403 or 404, never a 304. Errors carry `Cache-Control: no-store`. With `If-None-
    Match` and `Prefer: wait=N`, under an ASGI server, the read blocks until the answer changes or N
    seconds pass (a long poll): permission is checked before the wait and again when it ends, and a
    liveness expiry during the wait answers `stopped`.

    Args:
        if_none_match (str | Unset):
        marimo_session_id (str):
        prefer (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Any | KernelStatusError | KernelStatusResponse]
    """

    kwargs = _get_kwargs(
        if_none_match=if_none_match,
        marimo_session_id=marimo_session_id,
        prefer=prefer,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    *,
    client: AuthenticatedClient,
    if_none_match: str | Unset = UNSET,
    marimo_session_id: str,
    prefer: str | Unset = UNSET,
) -> Any | KernelStatusError | KernelStatusResponse | None:
    """Is this session's kernel busy?

     Derived state of the kernel of the session named by the `Marimo-Session-Id` header. Requires edit
    access to that session. Successful answers carry an `ETag` (a hash of the body: it changes exactly
    when the body changes) and `Cache-Control: private, no-cache`; send the tag back in `If-None-Match`
    to get 304 with no body while nothing changed. Permission is checked first, so a caller without
    access gets the 401, 403 or 404, never a 304. Errors carry `Cache-Control: no-store`. With `If-None-
    Match` and `Prefer: wait=N`, under an ASGI server, the read blocks until the answer changes or N
    seconds pass (a long poll): permission is checked before the wait and again when it ends, and a
    liveness expiry during the wait answers `stopped`.

    Args:
        if_none_match (str | Unset):
        marimo_session_id (str):
        prefer (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Any | KernelStatusError | KernelStatusResponse
    """

    return (
        await asyncio_detailed(
            client=client,
            if_none_match=if_none_match,
            marimo_session_id=marimo_session_id,
            prefer=prefer,
        )
    ).parsed
