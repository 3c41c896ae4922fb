from http import HTTPStatus
from typing import Any

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.kernel_sessions_state import KernelSessionsState
from ...models.kernel_status_error import KernelStatusError
from ...models.paginated_kernel_session_list import PaginatedKernelSessionList
from ...types import UNSET, Response, Unset


def _get_kwargs(
    *,
    cursor: str | Unset = UNSET,
    idle_for: float | Unset = UNSET,
    page_size: int | Unset = UNSET,
    state: KernelSessionsState | Unset = UNSET,
) -> dict[str, Any]:

    params: dict[str, Any] = {}

    params["cursor"] = cursor

    params["idle_for"] = idle_for

    params["page_size"] = page_size

    json_state: str | Unset = UNSET
    if not isinstance(state, Unset):
        json_state = state.value

    params["state"] = json_state

    params = {k: v for k, v in params.items() if v is not UNSET and v is not None}

    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/api/kernel/sessions",
        "params": params,
    }

    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> KernelStatusError | PaginatedKernelSessionList | None:
    if response.status_code == 200:
        response_200 = PaginatedKernelSessionList.from_dict(response.json())

        return response_200

    if response.status_code == 400:
        response_400 = KernelStatusError.from_dict(response.json())

        return response_400

    if response.status_code == 401:
        response_401 = KernelStatusError.from_dict(response.json())

        return response_401

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
) -> Response[KernelStatusError | PaginatedKernelSessionList]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    *,
    client: AuthenticatedClient,
    cursor: str | Unset = UNSET,
    idle_for: float | Unset = UNSET,
    page_size: int | Unset = UNSET,
    state: KernelSessionsState | Unset = UNSET,
) -> Response[KernelStatusError | PaginatedKernelSessionList]:
    """The sessions the caller may edit, with their states

     Sessions the caller may edit (every session for holders of the `kernel_status.view_all_sessions`
    permission, such as a culler's service account), in a stable order, a page at a time: follow `next`
    until it is null. Each entry's `state` is derived as for `GET /api/kernel/status`. One database
    query per page. Answers carry `Cache-Control: no-store`.

    Args:
        cursor (str | Unset):
        idle_for (float | Unset):
        page_size (int | Unset):
        state (KernelSessionsState | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[KernelStatusError | PaginatedKernelSessionList]
    """

    kwargs = _get_kwargs(
        cursor=cursor,
        idle_for=idle_for,
        page_size=page_size,
        state=state,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    *,
    client: AuthenticatedClient,
    cursor: str | Unset = UNSET,
    idle_for: float | Unset = UNSET,
    page_size: int | Unset = UNSET,
    state: KernelSessionsState | Unset = UNSET,
) -> KernelStatusError | PaginatedKernelSessionList | None:
    """The sessions the caller may edit, with their states

     Sessions the caller may edit (every session for holders of the `kernel_status.view_all_sessions`
    permission, such as a culler's service account), in a stable order, a page at a time: follow `next`
    until it is null. Each entry's `state` is derived as for `GET /api/kernel/status`. One database
    query per page. Answers carry `Cache-Control: no-store`.

    Args:
        cursor (str | Unset):
        idle_for (float | Unset):
        page_size (int | Unset):
        state (KernelSessionsState | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        KernelStatusError | PaginatedKernelSessionList
    """

    return sync_detailed(
        client=client,
        cursor=cursor,
        idle_for=idle_for,
        page_size=page_size,
        state=state,
    ).parsed


async def asyncio_detailed(
    *,
    client: AuthenticatedClient,
    cursor: str | Unset = UNSET,
    idle_for: float | Unset = UNSET,
    page_size: int | Unset = UNSET,
    state: KernelSessionsState | Unset = UNSET,
) -> Response[KernelStatusError | PaginatedKernelSessionList]:
    """The sessions the caller may edit, with their states

     Sessions the caller may edit (every session for holders of the `kernel_status.view_all_sessions`
    permission, such as a culler's service account), in a stable order, a page at a time: follow `next`
    until it is null. Each entry's `state` is derived as for `GET /api/kernel/status`. One database
    query per page. Answers carry `Cache-Control: no-store`.

    Args:
        cursor (str | Unset):
        idle_for (float | Unset):
        page_size (int | Unset):
        state (KernelSessionsState | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[KernelStatusError | PaginatedKernelSessionList]
    """

    kwargs = _get_kwargs(
        cursor=cursor,
        idle_for=idle_for,
        page_size=page_size,
        state=state,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    *,
    client: AuthenticatedClient,
    cursor: str | Unset = UNSET,
    idle_for: float | Unset = UNSET,
    page_size: int | Unset = UNSET,
    state: KernelSessionsState | Unset = UNSET,
) -> KernelStatusError | PaginatedKernelSessionList | None:
    """The sessions the caller may edit, with their states

     Sessions the caller may edit (every session for holders of the `kernel_status.view_all_sessions`
    permission, such as a culler's service account), in a stable order, a page at a time: follow `next`
    until it is null. Each entry's `state` is derived as for `GET /api/kernel/status`. One database
    query per page. Answers carry `Cache-Control: no-store`.

    Args:
        cursor (str | Unset):
        idle_for (float | Unset):
        page_size (int | Unset):
        state (KernelSessionsState | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        KernelStatusError | PaginatedKernelSessionList
    """

    return (
        await asyncio_detailed(
            client=client,
            cursor=cursor,
            idle_for=idle_for,
            page_size=page_size,
            state=state,
        )
    ).parsed
