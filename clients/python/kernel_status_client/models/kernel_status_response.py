from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.kernel_status_state_enum import KernelStatusStateEnum
from ..types import UNSET, Unset

T = TypeVar("T", bound="KernelStatusResponse")


@_attrs_define
class KernelStatusResponse:
    """Answer of `GET /api/kernel/status`.

    Attributes:
        state (KernelStatusStateEnum): Derived state of a session's kernel, as `GET /api/kernel/status` answers it.
        last_activity (datetime.datetime | None | Unset): The latest timestamp among the kernel starts and the cell
            notifications with a status (a cell queued, starting to run or finishing) of the current kernel process (ISO
            8601, UTC); null when there is none yet, or after a reset. Heartbeats, stops, status-less notifications and
            reads never change it.
    """

    state: KernelStatusStateEnum
    last_activity: datetime.datetime | None | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        state = self.state.value

        last_activity: None | str | Unset
        if isinstance(self.last_activity, Unset):
            last_activity = UNSET
        elif isinstance(self.last_activity, datetime.datetime):
            last_activity = self.last_activity.isoformat()
        else:
            last_activity = self.last_activity

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "state": state,
            }
        )
        if last_activity is not UNSET:
            field_dict["last_activity"] = last_activity

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        state = KernelStatusStateEnum(d.pop("state"))

        def _parse_last_activity(data: object) -> datetime.datetime | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                last_activity_type_0 = datetime.datetime.fromisoformat(data)

                return last_activity_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None | Unset, data)

        last_activity = _parse_last_activity(d.pop("last_activity", UNSET))

        kernel_status_response = cls(
            state=state,
            last_activity=last_activity,
        )

        kernel_status_response.additional_properties = d
        return kernel_status_response

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
