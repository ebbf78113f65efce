"""Pure pieces: ARM path canonicalisation, job state transitions, storage path cleaning, signed links."""

from __future__ import annotations

import pytest

from batchai.api import links
from batchai.api.app import canonical_path
from batchai.states import ALLOWED, IllegalTransition, JobState, check_transition
from batchai.storage.base import InvalidPath, clean_path


def test_fixed_segments_are_canonical_and_names_are_kept() -> None:
    path = "/subscriptions/S/resourcegroups/Jobs/providers/microsoft.batchai/WORKSPACES/Clusters/clusters/jobs"
    assert canonical_path(path) == (
        "/subscriptions/S/resourceGroups/Jobs/providers/Microsoft.BatchAI/workspaces/Clusters/clusters/jobs"
    )
    assert canonical_path("/storage/a/shares/b") == "/storage/a/shares/b"


def test_terminal_states_are_never_left() -> None:
    for terminal in (JobState.SUCCEEDED, JobState.FAILED):
        assert terminal.is_terminal
        for target in JobState:
            with pytest.raises(IllegalTransition):
                check_transition(terminal, target)
    check_transition(JobState.QUEUED, JobState.RUNNING)
    check_transition(JobState.RUNNING, JobState.TERMINATING)
    with pytest.raises(IllegalTransition):
        check_transition(JobState.TERMINATING, JobState.RUNNING)
    assert set(ALLOWED) == set(JobState)


@pytest.mark.parametrize(("raw", "clean"), [("a//b/", "a/b"), ("./a/./b", "a/b"), ("", ""), ("x", "x")])
def test_clean_paths(raw: str, clean: str) -> None:
    assert clean_path(raw) == clean


@pytest.mark.parametrize("raw", ["../x", "a/../../b", "/etc/passwd", "a\\b", "a\x00b"])
def test_escaping_paths_are_refused(raw: str) -> None:
    with pytest.raises(InvalidPath):
        clean_path(raw)


def test_signed_links_verify_and_expire() -> None:
    key = b"k" * 32
    url = links.sign(key, "http://h", "v|acct|share|logs|a/b.txt", "b.txt", expiry=1000)
    query = dict(part.split("=", 1) for part in url.split("?", 1)[1].split("&"))
    from urllib.parse import unquote

    r, se, sig = unquote(query["r"]), query["se"], query["sig"]
    assert links.verify(key, r, se, sig, now=999) == "v|acct|share|logs|a/b.txt"
    with pytest.raises(links.LinkExpired, match="expired"):
        links.verify(key, r, se, sig, now=1001)
    with pytest.raises(links.LinkExpired, match="signature"):
        links.verify(key, r, "2000", sig, now=999)
    with pytest.raises(links.LinkExpired, match="signature"):
        links.verify(b"other" * 8, r, se, sig, now=999)
