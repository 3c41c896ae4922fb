from http import HTTPStatus
from typing import Any

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.kernel_event_batch import KernelEventBatch
from ...models.kernel_event_batch_error import KernelEventBatchError
from ...models.kernel_event_batch_result import KernelEventBatchResult
from ...models.kernel_status_error import KernelStatusError
from ...types import Response


def _get_kwargs(
    *,
    body: KernelEventBatch,
    marimo_session_id: str,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    headers["Marimo-Session-Id"] = marimo_session_id

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/api/kernel/events",
    }

    _kwargs["json"] = body.to_dict()

    headers["Content-Type"] = "application/json"

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> KernelEventBatchError | KernelEventBatchResult | KernelStatusError | None:
    if response.status_code == 200:
        response_200 = KernelEventBatchResult.from_dict(response.json())

        return response_200

    if response.status_code == 400:
        response_400 = KernelEventBatchError.from_dict(response.json())

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

    if response.status_code == 411:
        response_411 = KernelStatusError.from_dict(response.json())

        return response_411

    if response.status_code == 413:
        response_413 = KernelStatusError.from_dict(response.json())

        return response_413

    if response.status_code == 415:
        response_415 = KernelStatusError.from_dict(response.json())

        return response_415

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
) -> Response[KernelEventBatchError | KernelEventBatchResult | KernelStatusError]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    *,
    client: AuthenticatedClient,
    body: KernelEventBatch,
    marimo_session_id: str,
) -> Response[KernelEventBatchError | KernelEventBatchResult | KernelStatusError]:
    """Report kernel and cell events of one session

     For kernel hosts. Applies marimo `cell-op` frames (verbatim) and lifecycle reports (`kernel-
    started`, `kernel-heartbeat`, `kernel-stopped`) to the mirror in one transaction. Events older than
    what is stored are ignored, so retries and out-of-order delivery are safe. Frames with any other op
    are rejected: send only these four. Requires the `kernel_status.report_kernel_events` permission;
    session edit access does not count. A rejected batch changes nothing.

    Args:
        marimo_session_id (str):
        body (KernelEventBatch): Events of one session, in any order: timestamps decide.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[KernelEventBatchError | KernelEventBatchResult | KernelStatusError]
    """

    kwargs = _get_kwargs(
        body=body,
        marimo_session_id=marimo_session_id,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    *,
    client: AuthenticatedClient,
    body: KernelEventBatch,
    marimo_session_id: str,
) -> KernelEventBatchError | KernelEventBatchResult | KernelStatusError | None:
    """Report kernel and cell events of one session

     For kernel hosts. Applies marimo `cell-op` frames (verbatim) and lifecycle reports (`kernel-
    started`, `kernel-heartbeat`, `kernel-stopped`) to the mirror in one transaction. Events older than
    what is stored are ignored, so retries and out-of-order delivery are safe. Frames with any other op
    are rejected: send only these four. Requires the `kernel_status.report_kernel_events` permission;
    session edit access does not count. A rejected batch changes nothing.

    Args:
        marimo_session_id (str):
        body (KernelEventBatch): Events of one session, in any order: timestamps decide.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        KernelEventBatchError | KernelEventBatchResult | KernelStatusError
    """

    return sync_detailed(
        client=client,
        body=body,
        marimo_session_id=marimo_session_id,
    ).parsed


async def asyncio_detailed(
    *,
    client: AuthenticatedClient,
    body: KernelEventBatch,
    marimo_session_id: str,
) -> Response[KernelEventBatchError | KernelEventBatchResult | KernelStatusError]:
    """Report kernel and cell events of one session

     For kernel hosts. Applies marimo `cell-op` frames (verbatim) and lifecycle reports (`kernel-
    started`, `kernel-heartbeat`, `kernel-stopped`) to the mirror in one transaction. Events older than
    what is stored are ignored, so retries and out-of-order delivery are safe. Frames with any other op
    are rejected: send only these four. Requires the `kernel_status.report_kernel_events` permission;
    session edit access does not count. A rejected batch changes nothing.

    Args:
        marimo_session_id (str):
        body (KernelEventBatch): Events of one session, in any order: timestamps decide.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[KernelEventBatchError | KernelEventBatchResult | KernelStatusError]
    """

    kwargs = _get_kwargs(
        body=body,
        marimo_session_id=marimo_session_id,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    *,
    client: AuthenticatedClient,
    body: KernelEventBatch,
    marimo_session_id: str,
) -> KernelEventBatchError | KernelEventBatchResult | KernelStatusError | None:
    """Report kernel and cell events of one session

     For kernel hosts. Applies marimo `cell-op` frames (verbatim) and lifecycle reports (`kernel-
    started`, `kernel-heartbeat`, `kernel-stopped`) to the mirror in one transaction. Events older than
    what is stored are ignored, so retries and out-of-order delivery are safe. Frames with any other op
    are rejected: send only these four. Requires the `kernel_status.report_kernel_events` permission;
    session edit access does not count. A rejected batch changes nothing.

    Args:
        marimo_session_id (str):
        body (KernelEventBatch): Events of one session, in any order: timestamps decide.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        KernelEventBatchError | KernelEventBatchResult | KernelStatusError
    """

    return (
        await asyncio_detailed(
            client=client,
            body=body,
            marimo_session_id=marimo_session_id,
        )
    ).parsed
