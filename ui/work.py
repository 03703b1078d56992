"""The chat app's background worker: ingests of uploads and checks of a knowledge base run as jobs on
one worker shared by every session, so a rerun of the page (a question typed meanwhile) never stops them."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from ragapp.jobs import Job, Jobs


@st.cache_resource(show_spinner=False)
def jobs() -> Jobs:
    """The worker, once per process."""
    return Jobs()


def active(kb: Path, kind: str = "ingest") -> Job | None:
    """The knowledge base's job of this kind that is queued or running, or None."""
    return jobs().active(str(kb), kind)


def remember(kb: Path, job: Job) -> None:
    """Note a job this session started (its result is shown to this session when it ends)."""
    st.session_state.setdefault("my_jobs", {}).setdefault(f"{job.kind}:{kb}", []).append(job.id)


def mine(kb: Path, kind: str) -> list[Job]:
    """The jobs of this kind this session started on the knowledge base, oldest first."""
    found = (jobs().get(i) for i in st.session_state.get("my_jobs", {}).get(f"{kind}:{kb}", []))
    return [j for j in found if j is not None]


@st.cache_resource(show_spinner=False)
def retried() -> set[tuple[str, frozenset[str]]]:
    """(knowledge base, files) this process already tried to index again on its own (once each, so a file
    that cannot be read is not read again and again)."""
    return set()
