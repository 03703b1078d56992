"""ragapp's Streamlit chat page. Start it with `ragapp ui [--index DIR] [--port N]`.

Only ragapp's public API is used here: RAG.ask_stream / search / ingest / remove / documents.
The knowledge base to open first comes from RAGAPP_INDEX and the settings from RAGAPP_CONFIG
(both set by `ragapp ui`).
"""

from __future__ import annotations

import hmac
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import streamlit as st

try:
    from ui.check import check_page, feedback_buttons
    from ui.citations import highlighted, render_citation
    from ui.markdown import plain_markdown, safe_markdown
    from ui.team import keep_turn, render_saved, saved_conversations, sign_out_button, signed_in
    from ui.words import LANGUAGES, language, t
    from ui.work import active, jobs, mine, remember, retried
except ImportError:  # run as a plain script without the project installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from ui.check import check_page, feedback_buttons
    from ui.citations import highlighted, render_citation
    from ui.markdown import plain_markdown, safe_markdown
    from ui.team import keep_turn, render_saved, saved_conversations, sign_out_button, signed_in
    from ui.words import LANGUAGES, language, t
    from ui.work import active, jobs, mine, remember, retried

from ragapp import RAG, Answer, Config, RagError, Turn
from ragapp.config import GENERATE_BACKENDS
from ragapp.display import shown_path
from ragapp.generate import build_generator
from ragapp.jobs import Job
from ragapp.knowledge import ALLOWED_SUFFIXES, DOCUMENTS, KnowledgeBases, is_upload, safe_name, save_upload
from ragapp.net import LOOPBACK_NAMES, host_name, is_loopback
from ragapp.query.refusal import closest_passages
from ragapp.runtime import prepare_environment
from ragapp.teams import Principal
from ragapp.teams.access import EDIT
from ragapp.text import detect_language
from ragapp.watch import WatchStatus

PASSWORD_ENV = "RAGAPP_UI_PASSWORD"
PAGES = ("chat", "check")
# How long a question waits for an upload's ingest of its knowledge base before it is answered anyway.
WAIT_FOR_INGEST_S = 600


# -- resources: loaded once per process, shared by every browser session ----------------------

@st.cache_resource(show_spinner=False)
def load_config(path: str) -> Config:
    return Config.load(path or None)


@st.cache_resource(show_spinner=False)
def knowledge(index: str, config_path: str) -> KnowledgeBases:
    """The knowledge bases, sharing one embedder and chat model (models load once per process)."""
    config = load_config(config_path)
    prepare_environment(config.threads)
    return KnowledgeBases(Path(config.ui.knowledge_root), config, default=Path(index))


def kb_jobs(kb: Path) -> list[Job]:
    """The ingest jobs of a knowledge base that are queued or running."""
    job = active(kb)
    return [job] if job is not None else []


def default_index() -> str:
    return os.environ.get("RAGAPP_INDEX", "data/index")


@st.cache_resource(show_spinner=False)
def generator_for(config_path: str, backend: str, model: str, url: str, key_env: str):
    """The chat model chosen in the settings (loaded once per choice, shared by every session)."""
    config = load_config(config_path)
    return build_generator(replace(config.generate, backend=backend, model=model, base_url=url, api_key_env=key_env),
                           config.cache_dir, config.models)


def open_kb(path: str, config_path: str, model: tuple[str, str, str, str] | None = None) -> RAG:
    """A knowledge base; `model` (backend, model, url, key env) picks the chat model, None the configured one."""
    generator = generator_for(config_path, *model) if model else None
    return knowledge(default_index(), config_path).open(Path(path), generator)


# -- rendering ----------------------------------------------------------------------------------

def _where(source: str, place: str) -> str:
    """A document's name and where in it (escaped: labels render Markdown)."""
    return plain_markdown(Path(source).name + (f", {place}" if place else ""))


def render_scores(answer: Answer) -> None:
    rows = [{"#": n, "source": _where(h.chunk.source, h.chunk.place), "bm25 rank": h.bm25_rank, "dense rank": h.dense_rank,
             "fused": h.fused_score, "rerank": h.rerank_score} for n, h in enumerate(answer.hits, start=1)]
    st.dataframe(rows, hide_index=True)


def render_answer(question: str, answer: Answer, show_scores: bool, rag: RAG | None = None) -> None:
    """An answer with its numbered citations, or a calm refusal in plain words (in the question's
    language) with the closest passages, the figures one click away."""
    if answer.query and answer.query != question.strip():
        st.caption(t("searched_for", query=plain_markdown(answer.query)))
    if answer.answered:
        st.markdown(safe_markdown(answer.text))
        if answer.table is not None:
            st.caption(t("table_query", where=_where(answer.table.source, answer.table.place),
                         rows=", ".join(map(str, answer.table.rows[:20]))))
            st.code(answer.table.sql, language="sql")
        st.caption(t("confidence", value=answer.confidence))
        for n, c in enumerate(answer.citations, start=1):
            with st.expander(f"[{n}] {_where(c.source, c.place)}"):
                render_citation(rag, n, c, answer.table, plain_markdown(shown_path(c.source)))
    else:
        render_refusal(question, answer)
    _timing(answer)
    if show_scores and answer.hits:
        render_scores(answer)


def render_refusal(question: str, answer: Answer) -> None:
    said = detect_language(question)
    st.info(answer.text, icon="ℹ️")
    if answer.draft:
        with st.expander(t("withheld", said, value=answer.confidence)):
            st.markdown(safe_markdown(answer.draft))
    if not answer.hits:
        return
    st.caption(t("refusal_plain", said))
    for h in closest_passages(answer.hits):
        with st.expander(t("closest", said, where=_where(h.chunk.source, h.chunk.place))):
            st.markdown(highlighted(h.chunk.text, h.support), unsafe_allow_html=True)
    if answer.reason:
        with st.expander(t("details", said)):
            st.caption(plain_markdown(answer.reason))


def _timing(answer: Answer) -> None:
    if not answer.timings_ms:
        return
    seconds = f"{answer.timings_ms.get('total_ms', 0) / 1000:.2f}"
    asked_model = "generate_ms" in answer.timings_ms or answer.answered
    st.caption(t("answered_by", model=plain_markdown(answer.model or "?"), seconds=seconds) if asked_model
               else t("refused_at_gate", seconds=seconds))


def error_message(exc: Exception) -> str:
    return str(exc) if isinstance(exc, RagError | LookupError) else f"{type(exc).__name__}: {exc}"


# -- sidebar: knowledge bases, uploads, documents, settings ------------------------------------

def sidebar(config: Config, config_path: str, who: Principal) -> tuple[RAG, Path, dict]:
    kbs = knowledge(default_index(), config_path)
    with st.sidebar:
        sign_out_button(config, who)
        if st.session_state.get("ui_language") not in LANGUAGES:
            st.session_state["ui_language"] = language()
        st.segmented_control(t("language"), list(LANGUAGES), format_func=LANGUAGES.get, key="ui_language")
        lang = language()  # bound into the labels below: a widget's labels are computed outside the run too
        page = st.radio(t("page"), PAGES, format_func=lambda p: t(f"page_{p}", lang), key="page", horizontal=True)
        st.header(t("kb"))
        names = [str(b) for b in kbs.folders() if who.role(b.name)]
        if not names:
            raise LookupError(t("no_kb_for_you"))
        if (pending := st.session_state.pop("kb_pending", None)) in names:
            st.session_state["kb"] = pending  # a knowledge base just created: select it (before the widget exists)
        if st.session_state.get("kb") not in names:
            st.session_state["kb"] = names[0]
        kb = Path(st.selectbox(t("kb"), names, key="kb", format_func=lambda p: Path(p).name))
        with st.popover(t("kb_new"), disabled=not who.admin):
            name = st.text_input(t("kb_name"), key="kb_new_name")
            if st.button(t("kb_create"), key="kb_create") and name:
                try:
                    st.session_state["kb_pending"] = str(kbs.create(name))
                    st.rerun()
                except ValueError as exc:
                    st.error(plain_markdown(str(exc)))
        rag = open_kb(str(kb), config_path)
        saved_conversations(config, who, kb)
        if who.may(kb.name, EDIT):
            _add_documents(config, rag, kb, kbs)
        st.subheader(t("documents"))
        documents(rag, kb, kbs, who.may(kb.name, EDIT))
        watched_folders(kb)

        st.subheader(t("settings"))
        settings = {
            "top_k": st.slider(t("top_k"), 1, 10, config.retrieve.top_k, key="top_k"),
            "language": st.radio(t("answer_language"), ["auto", "en", "zh"], horizontal=True, key="language",
                                 format_func=lambda v: t("lang_auto", lang) if v == "auto" else LANGUAGES[v]),
            "show_scores": st.checkbox(t("show_scores"), key="show_scores"),
            "page": page,
        }
        choice = model_settings(config)
        if choice is not None:
            try:
                rag = open_kb(str(kb), config_path, choice)
            except RagError as exc:
                st.error(plain_markdown(error_message(exc)))
    return rag, kb, settings


def _add_documents(config: Config, rag: RAG, kb: Path, kbs: KnowledgeBases) -> None:
    """The sidebar's uploader, with what became of the last uploads (an editor's)."""
    st.subheader(t("add_documents"))
    limit = config.ui.max_upload_mb
    files = st.file_uploader(t("uploader", limit=limit), type=[s.lstrip(".") for s in ALLOWED_SUFFIXES],
                             accept_multiple_files=True, key="uploads")
    replace_files = st.checkbox(t("replace"), key="replace_uploads")
    if files and st.button(t("ingest"), key="ingest", type="primary"):
        save_uploads(rag, kb, files, limit * 1_000_000, replace_files)
    if flash := st.session_state.pop("flash", None):
        (st.success if flash[0] == "ok" else st.error)(plain_markdown(flash[1]))
    for line in st.session_state.get("upload_refusals", {}).get(str(kb), []):
        st.write(line)
    ingest_status(kb)
    unindexed(rag, kb, kbs)


@st.fragment(run_every="5s")
def watched_folders(kb: Path) -> None:
    """The folders a watcher (`ragapp watch`, `ragapp serve --watch`) keeps in step with this knowledge
    base: last sync, pending changes, failures; refreshed every 5 s."""
    status = WatchStatus.read(kb)
    if status is None:
        return
    st.subheader(t("watched"))
    for folder in status.folders:
        st.write(f"{t('watched_folder')}: {plain_markdown(shown_path(folder, 60))}")
    when = time.strftime("%H:%M:%S", time.localtime(status.last_sync)) if status.last_sync else t("not_yet")
    state = status.state if status.alive else t("watch_stopped")
    st.caption(t("watch_state", state=plain_markdown(state), when=when, pending=status.pending, batches=status.batches))
    for failure in status.failures[:5]:
        where = shown_path(str(failure.get("path", "")), 50)
        st.warning(plain_markdown(f"{where + ': ' if where else ''}{failure.get('reason', '')}"))


def server_key(config: Config, url: str) -> str:
    """The key variable the config pairs with this server URL ("" for any other URL): a visitor of the
    page never chooses which environment variable is sent, nor where to."""
    gen = config.generate
    return gen.api_key_env if gen.base_url and gen.base_url.rstrip("/") == url.strip().rstrip("/") else ""


def model_settings(config: Config) -> tuple[str, str, str, str] | None:
    """Which backend and model answer: the configured ones, or what the user picks here."""
    gen = config.generate
    with st.expander(t("chat_model")):
        backends = list(GENERATE_BACKENDS)
        backend = st.selectbox(t("backend"), backends, index=backends.index(gen.backend), key="llm_backend")
        model = st.text_input(t("model"), gen.model, key="llm_model",
                              help=t("model_help"))
        url = key_env = ""
        if backend == "openai":
            url = st.text_input(t("server_url"), gen.base_url or "http://127.0.0.1:11434/v1", key="llm_url")
            key_env = server_key(config, url)
            st.caption(t("key_paired", env=plain_markdown(key_env)) if key_env else t("key_none"))
    choice = (backend, model, url, key_env)
    configured = (gen.backend, gen.model, *((gen.base_url, gen.api_key_env) if gen.backend == "openai" else ("", "")))
    return None if choice == configured else choice


def save_uploads(rag: RAG, kb: Path, files, max_bytes: int, replace: bool = False) -> None:
    """Save each upload into the knowledge base's documents/ (a file is refused alone: its name, size, a
    name another file of the selection took, or an existing document when `replace` is off), then
    ingest the folder as a job on the shared worker, which no rerun of the page stops."""
    refused, saved, taken = [], [], set()
    for upload in files:
        try:
            clean = safe_name(upload.name)
            if clean in taken:
                raise ValueError(f"another file of this selection is saved as {clean!r}")
            taken.add(clean)
            saved.append(save_upload(kb, upload.name, upload.getvalue(), max_bytes, replace))
        except (ValueError, OSError) as exc:
            refused.append(f"- {t('refused_upload')} {plain_markdown(f'{upload.name}: {exc}')}")
    st.session_state.setdefault("upload_refusals", {})[str(kb)] = refused
    if saved:
        ingest_folder(rag, kb)
        st.session_state["flash"] = ("ok", t("saved_for_ingest", n=len(saved)))


def ingest_folder(rag: RAG, kb: Path, mine: bool = True) -> Job:
    """An ingest of the knowledge base's documents/ on the shared worker (the one queued, if any); `mine`:
    this session asked for it, and is shown what it did."""
    running = kb_jobs(kb)
    if running and running[0].status == "queued":
        return running[0]
    job = jobs().submit(str(kb), lambda progress: rag.ingest([kb / DOCUMENTS], progress=progress))
    if mine:
        remember(kb, job)
    return job


def ingest_status(kb: Path) -> None:
    """What this session's last ingest of the knowledge base did; while one runs (anyone's), its progress."""
    ended = [j for j in mine(kb, "ingest") if j.status not in ("queued", "running")]
    st.session_state.setdefault("jobs_seen", set()).update(j.id for j in ended)
    if ended:
        _job_summary(ended[-1])
    if kb_jobs(kb):
        ingest_progress(kb)


@st.fragment(run_every="1s")
def ingest_progress(kb: Path) -> None:
    """The running ingest's progress, redrawn every second (only while one runs); when it ends, the whole
    page again (the documents list, what it did)."""
    for job in kb_jobs(kb):
        share = job.done / job.total if job.total else 0.0
        text = t("job_queued") if job.status == "queued" else t("job_stage", stage=job.stage, done=job.done, total=job.total)
        st.progress(min(1.0, share), text=text)
    seen = st.session_state.setdefault("jobs_seen", set())
    if not kb_jobs(kb) or any(j.id not in seen and j.status not in ("queued", "running") for j in mine(kb, "ingest")):
        st.rerun(scope="app")


def unindexed(rag: RAG, kb: Path, kbs: KnowledgeBases) -> None:
    """Files saved in documents/ that the index does not hold, with a button to index them (checked on each
    run of the page, not on the progress's every second: a scan of a large folder is not free)."""
    if kb_jobs(kb):
        return
    missing = kbs.unindexed(rag)
    attempt = (str(kb), frozenset(str(f) for f in missing))
    if missing and attempt not in retried():  # an ingest that was stopped (the app closed mid-upload): once, by itself
        retried().add(attempt)
        ingest_folder(rag, kb, mine=False)
        return
    if missing:
        st.warning(t("unindexed", n=len(missing)) + " " + ", ".join(plain_markdown(f.name) for f in missing[:10]))
        if st.button(t("unindexed_retry"), key="ingest_unindexed"):
            ingest_folder(rag, kb)
            st.rerun()


def _job_summary(job: Job) -> None:
    data = job.to_dict()
    report = data["report"]
    if report is None:
        st.error(plain_markdown(t("job_failed", error=data["error"] or data["status"])))
        return
    st.write(t("job_done", added=len(report["added"]) + len(report["updated"]), unchanged=len(report["unchanged"]),
               failed=len(report["failed"])))
    for failure in report["failed"]:
        line = f"{Path(failure['path']).name}: {failure['reason']}"
        st.write(f"- {t('failed_file')} {plain_markdown(line)}")


def documents(rag: RAG, kb: Path, kbs: KnowledgeBases, can_delete: bool = True) -> None:
    docs = rag.documents()
    if not docs:
        st.caption(t("no_documents_sidebar"))
        return
    # A data frame, not a table: it fits the sidebar's width and scrolls (a long name cut the table before).
    st.dataframe({t("col_document"): [shown_path(d.source, 80).rsplit("/", 1)[-1] for d in docs],
                  t("col_chunks"): [d.chunks for d in docs],
                  t("col_ingested"): [time.strftime("%Y-%m-%d %H:%M", time.localtime(d.ingested_at)) for d in docs]},
                 hide_index=True, width="stretch")
    if not can_delete:
        return
    sources = [d.source for d in docs]
    target = st.selectbox(t("delete_choice"), sources, format_func=lambda s: Path(s).name, key="delete_choice")
    if st.button(t("delete"), key="delete"):
        try:
            if is_upload(kb, target):  # the entry in documents/ itself; a link's target is never removed
                kbs.delete(rag, Path(target).resolve().relative_to((kb / DOCUMENTS).resolve()).as_posix())
            else:
                rag.remove([target])
            st.session_state["flash"] = ("ok", t("deleted", name=Path(target).name))
        except (RagError, OSError, LookupError) as exc:
            st.session_state["flash"] = ("error", error_message(exc))
        st.rerun()


# -- the chat ----------------------------------------------------------------------------------

def chat(rag: RAG, kb: Path, settings: dict, keep=lambda question, answer: None) -> None:
    """The conversation on `kb`; each new answer also goes to `keep` (a team's saved conversations)."""
    history = st.session_state.setdefault("history", {}).setdefault(str(kb), [])
    for n, entry in enumerate(history):
        with st.chat_message("user"):
            st.markdown(safe_markdown(entry["question"]))
        with st.chat_message("assistant"):
            if "saved" in entry:
                render_saved(entry["saved"])
            elif "error" in entry:
                st.error(plain_markdown(entry["error"]))
            else:
                render_answer(entry["question"], entry["answer"], settings["show_scores"], rag)
                feedback_buttons(rag, entry["question"], entry["answer"], f"{kb}-{n}")
    if not rag.documents() and not kb_jobs(kb):
        st.info(t("no_documents"), icon="📄")
    question = st.chat_input(t("chat_input"))
    if not question:
        return
    with st.chat_message("user"):
        st.markdown(safe_markdown(question))
    turns = [Turn(e["question"], e["answer"].text, e["answer"].query) if "answer" in e else Turn(e["question"], e["saved"]["answer"])
             for e in history if "answer" in e or "saved" in e]
    entry: dict = {"question": question}
    with st.chat_message("assistant"):
        try:
            if kb_jobs(kb):  # an upload being indexed: the question is about it, most likely
                with st.spinner(t("waiting_ingest")):
                    _wait_for_ingest(kb)
            if not rag.ready:
                with st.spinner(t("loading_models")):
                    rag.warm_up()
            box = st.empty()
            with st.spinner(t("searching")):
                stream = rag.ask_stream(question, top_k=settings["top_k"],
                                        language=None if settings["language"] == "auto" else settings["language"],
                                        history=turns)
                pieces = iter(stream)
                first = next(pieces, "")
            text = first
            for piece in pieces:
                text += piece
                box.markdown(safe_markdown(text) + "▌")
            box.empty()
            entry["answer"] = stream.answer
            keep(question, stream.answer)
            render_answer(question, stream.answer, settings["show_scores"], rag)
            feedback_buttons(rag, question, stream.answer, f"{kb}-{len(history)}")
        except Exception as exc:  # one readable line in the page, never a traceback
            entry["error"] = error_message(exc)
            st.error(plain_markdown(entry["error"]))
    history.append(entry)


def _wait_for_ingest(kb: Path) -> None:
    deadline = time.monotonic() + WAIT_FOR_INGEST_S
    while kb_jobs(kb) and time.monotonic() < deadline:
        time.sleep(0.2)


def foreign_page(headers: Mapping[str, str], address: str) -> str:
    """Why a session was opened from somewhere that is not this app ("" when it was not): a Host that
    is not a loopback name while the app serves loopback (a DNS-rebinding page), or an Origin that is
    not the Host asked for (Streamlit lets any page on localhost, whatever its port, open the socket)."""
    if not headers:  # no HTTP request: AppTest
        return ""
    host = headers.get("Host", "")
    if is_loopback(address) and host_name(host) not in LOOPBACK_NAMES:
        return f"the page was opened through {host!r}, not a name of this computer"
    origin = (headers.get("Origin") or "").lower().rstrip("/")
    if origin and origin not in (f"http://{host.lower()}", f"https://{host.lower()}"):
        return f"the page was opened from {origin!r}"
    return ""


def allowed_in() -> bool:
    """The page is served only on loopback, or to whoever knows the password in RAGAPP_UI_PASSWORD,
    and never to a page of another site."""
    if why := foreign_page(st.context.headers, st.get_option("server.address") or ""):
        st.error(f"ragapp refuses this session: {plain_markdown(why)}. Open it at http://localhost:PORT.")
        return False
    password = os.environ.get(PASSWORD_ENV, "")
    if not password:
        address = st.get_option("server.address") or ""
        if is_loopback(address) or not st.context.headers:  # no HTTP request: AppTest, nothing served over a network
            return True
        st.error(f"This ragapp page is reachable from other machines (server address {address or 'all interfaces'!r}) "
                 f"and has no password: set {PASSWORD_ENV}, or start it with `ragapp ui` (localhost only).")
        return False
    if st.session_state.get("signed_in"):
        return True
    entered = st.text_input(t("password"), type="password", key="password")
    if entered and hmac.compare_digest(entered.encode(), password.encode()):
        st.session_state["signed_in"] = True
        st.rerun()
    elif entered:
        st.error(t("wrong_password"))
    return False


def main() -> None:
    st.set_page_config(page_title="ragapp", page_icon="📚", layout="wide")
    if not allowed_in():
        return
    st.markdown("<style>.ragapp-quote mark{background:#ffe58a;padding:0 2px}</style>", unsafe_allow_html=True)
    config_path = os.environ.get("RAGAPP_CONFIG", "")
    try:
        config = load_config(config_path)
        who = signed_in(config)
        if who is None:  # the sign-in form is shown
            return
        rag, kb, settings = sidebar(config, config_path, who)
    except Exception as exc:
        st.error(plain_markdown(error_message(exc)))
        return
    if settings["page"] == "check":
        check_page(rag)
        return
    st.title("ragapp")
    st.caption(t("title_caption", kb=plain_markdown(kb.name)))
    chat(rag, kb, settings, lambda question, answer: keep_turn(config, who, kb, question, answer))


# Streamlit runs this file as __main__; importing it (tests render single pieces) runs nothing.
if __name__ == "__main__":
    main()
