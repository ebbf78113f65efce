"""Wire models: durations, case-insensitive enums, unknown keys."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from batchai.models.base import format_duration, parse_duration
from batchai.models.wire import JobProperties, ManualScaleSettings


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("P7D", timedelta(days=7)),
        ("PT3S", timedelta(seconds=3)),
        ("P1DT2H30M", timedelta(days=1, hours=2, minutes=30)),
        ("pt1.5s", timedelta(seconds=1.5)),
        ("1.02:00:00", timedelta(days=1, hours=2)),
        ("00:10:00", timedelta(minutes=10)),
        ("7 days, 0:00:00", timedelta(days=7)),
        (30, timedelta(seconds=30)),
    ],
)
def test_durations_parse_in_every_form_clients_send(text: object, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "P", "PT", "7", "forever", "1:2", "P1Y"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(days=7), "P7D"),
        (timedelta(seconds=3), "PT3S"),
        (timedelta(days=1, hours=2), "P1DT2H"),
        (timedelta(0), "PT0S"),
        (timedelta(minutes=1, seconds=0.5), "PT1M0.5S"),
    ],
)
def test_durations_serialise_as_iso_8601(value: timedelta, text: str) -> None:
    assert format_duration(value) == text
    assert parse_duration(text) == value


def test_enums_match_case_insensitively_and_serialise_canonically() -> None:
    props = JobProperties.model_validate({"schedulingPriority": "HIGH"})
    assert props.wire() == {"schedulingPriority": "high"}
    assert (
        ManualScaleSettings.model_validate(
            {"targetNodeCount": 1, "nodeDeallocationOption": "WaitForJobCompletion"}
        ).wire()["nodeDeallocationOption"]
        == "waitforjobcompletion"
    )


def test_unknown_keys_and_missing_required_keys_are_refused() -> None:
    with pytest.raises(ValidationError, match="nodeCont"):
        JobProperties.model_validate({"nodeCont": 1})
    with pytest.raises(ValidationError, match="targetNodeCount"):
        ManualScaleSettings.model_validate({})
