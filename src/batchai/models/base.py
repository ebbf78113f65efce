"""Building blocks of the wire models: camelCase models, case-insensitive enums, ISO 8601 durations."""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, WithJsonSchema


class WireModel(BaseModel):
    """A JSON object of the Batch AI wire format: keys are the camelCase aliases, unknown keys refused."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", use_enum_values=True)

    def wire(self) -> dict[str, Any]:
        """The object as it travels: camelCase keys, unset and null values left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class WireEnum(StrEnum):
    """A string enum matched case-insensitively on input, as Azure does (``High`` == ``high``)."""

    @classmethod
    def _missing_(cls, value: object) -> WireEnum | None:
        if isinstance(value, str):
            for member in cls:
                if member.value.lower() == value.lower():
                    return member
        return None


_ISO = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_DOTNET = re.compile(r"^(?:(?P<d>\d+)[.:])?(?P<h>\d{1,2}):(?P<m>\d{1,2}):(?P<s>\d{1,2}(?:\.\d+)?)$")
_PYTHON = re.compile(r"^(?P<d>\d+) days?, (?P<h>\d{1,2}):(?P<m>\d{2}):(?P<s>\d{2}(?:\.\d+)?)$")


def parse_duration(value: object) -> timedelta:
    """Parse ``P7D``/``PT1H30M`` (ISO 8601), ``d.hh:mm:ss``/``hh:mm:ss`` (.NET) or ``7 days, 0:00:00``."""
    if isinstance(value, timedelta):
        return value
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return timedelta(seconds=value)
        if not isinstance(value, str):
            raise ValueError("a duration must be a string such as 'P7D', 'PT2H' or '1.00:00:00'")
        text = value.strip()
        for pattern in (_ISO, _DOTNET, _PYTHON):
            match = pattern.match(text.upper() if pattern is _ISO else text)
            if match and text not in ("P", "PT"):
                parts = {k: float(v) for k, v in match.groupdict().items() if v}
                return timedelta(
                    days=parts.get("d", 0),
                    hours=parts.get("h", 0),
                    minutes=parts.get("m", 0),
                    seconds=parts.get("s", 0),
                )
    except OverflowError as exc:  # more days than a timedelta holds, or an infinite number
        raise ValueError(f"the duration '{value}' is out of range") from exc
    raise ValueError(f"'{value}' is not a duration: use ISO 8601 ('P7D', 'PT30M') or 'd.hh:mm:ss'")


def format_duration(value: timedelta) -> str:
    """ISO 8601, as the SDKs write it: ``P7D``, ``PT3S``, ``P1DT2H``."""
    total = round(value.total_seconds(), 6)
    if total == 0:
        return "PT0S"
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    out = "P" + (f"{int(days)}D" if days else "")
    clock = (f"{int(hours)}H" if hours else "") + (f"{int(minutes)}M" if minutes else "")
    if seconds:
        clock += f"{seconds:g}S"
    return out + ("T" + clock if clock else "")


def _not_a_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("Input should be a valid integer, not a boolean")
    return value


# An integer of the wire format: ``true`` is not 1 (pydantic's lax mode would take it; Azure refuses it).
WireInt = Annotated[int, BeforeValidator(_not_a_bool)]

Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "duration", "example": "P7D"}),
]
