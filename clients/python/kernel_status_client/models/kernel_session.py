from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.kernel_status_state_enum import KernelStatusStateEnum

T = TypeVar("T", bound="KernelSession")


@_attrs_define
class KernelSession:
    """One session of `GET /api/kernel/sessions`.

    Attributes:
        session_id (str): The Marimo-Session-Id.
        notebook (str): The notebook's path.
        state (KernelStatusStateEnum): Derived state of a session's kernel, as `GET /api/kernel/status` answers it.
        last_activity (datetime.datetime | None): The latest timestamp among the kernel starts and the cell
            notifications with a status (a cell queued, starting to run or finishing) of the current kernel process (UTC);
            null when there is none yet, or after a reset. Heartbeats, stops, status-less notifications and reads never
            change it.
        queued_cells (int): Cells queued to run.
        running_cells (int): Cells running now.
    """

    session_id: str
    notebook: str
    state: KernelStatusStateEnum
    last_activity: datetime.datetime | None
    queued_cells: int
    running_cells: int
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        session_id = self.session_id

        notebook = self.notebook

        state = self.state.value

        last_activity: None | str
        if isinstance(self.last_activity, datetime.datetime):
            last_activity = self.last_activity.isoformat()
        else:
            last_activity = self.last_activity

        queued_cells = self.queued_cells

        running_cells = self.running_cells

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "session_id": session_id,
                "notebook": notebook,
                "state": state,
                "last_activity": last_activity,
                "queued_cells": queued_cells,
                "running_cells": running_cells,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        session_id = d.pop("session_id")

        notebook = d.pop("notebook")

        state = KernelStatusStateEnum(d.pop("state"))

        def _parse_last_activity(data: object) -> datetime.datetime | None:
            if data is None:
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                last_activity_type_0 = datetime.datetime.fromisoformat(data)

                return last_activity_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None, data)

        last_activity = _parse_last_activity(d.pop("last_activity"))

        queued_cells = d.pop("queued_cells")

        running_cells = d.pop("running_cells")

        kernel_session = cls(
            session_id=session_id,
            notebook=notebook,
            state=state,
            last_activity=last_activity,
            queued_cells=queued_cells,
            running_cells=running_cells,
        )

        kernel_session.additional_properties = d
        return kernel_session

    @property
    def additional_keys(self) -> list[str]:
        return list(self.additional_properties.keys())

    def __getitem__(self, key: str) -> Any:
        return self.additional_properties[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.additional_properties[key] = value

    def __delitem__(self, key: str) -> None:
        del self.additional_properties[key]

    def __contains__(self, key: str) -> bool:
        return key in self.additional_properties
