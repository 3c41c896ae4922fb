"""Contains all the data models used in inputs/outputs"""

from .cell_op_data import CellOpData
from .cell_op_event import CellOpEvent
from .cell_op_event_op_enum import CellOpEventOpEnum
from .cell_runtime_state_enum import CellRuntimeStateEnum
from .event_enum import EventEnum
from .kernel_event_batch import KernelEventBatch
from .kernel_event_batch_error import KernelEventBatchError
from .kernel_event_batch_item_error import KernelEventBatchItemError
from .kernel_event_batch_result import KernelEventBatchResult
from .kernel_heartbeat_data import KernelHeartbeatData
from .kernel_heartbeat_event import KernelHeartbeatEvent
from .kernel_heartbeat_event_op_enum import KernelHeartbeatEventOpEnum
from .kernel_session import KernelSession
from .kernel_session_event import KernelSessionEvent
from .kernel_sessions_state import KernelSessionsState
from .kernel_sessions_stream_state import KernelSessionsStreamState
from .kernel_started_data import KernelStartedData
from .kernel_started_event import KernelStartedEvent
from .kernel_started_event_op_enum import KernelStartedEventOpEnum
from .kernel_status_error import KernelStatusError
from .kernel_status_response import KernelStatusResponse
from .kernel_status_state_enum import KernelStatusStateEnum
from .kernel_stopped_data import KernelStoppedData
from .kernel_stopped_event import KernelStoppedEvent
from .kernel_stopped_event_op_enum import KernelStoppedEventOpEnum
from .paginated_kernel_session_list import PaginatedKernelSessionList

__all__ = (
    "CellOpData",
    "CellOpEvent",
    "CellOpEventOpEnum",
    "CellRuntimeStateEnum",
    "EventEnum",
    "KernelEventBatch",
    "KernelEventBatchError",
    "KernelEventBatchItemError",
    "KernelEventBatchResult",
    "KernelHeartbeatData",
    "KernelHeartbeatEvent",
    "KernelHeartbeatEventOpEnum",
    "KernelSession",
    "KernelSessionEvent",
    "KernelSessionsState",
    "KernelSessionsStreamState",
    "KernelStartedData",
    "KernelStartedEvent",
    "KernelStartedEventOpEnum",
    "KernelStatusError",
    "KernelStatusResponse",
    "KernelStatusStateEnum",
    "KernelStoppedData",
    "KernelStoppedEvent",
    "KernelStoppedEventOpEnum",
    "PaginatedKernelSessionList",
)
