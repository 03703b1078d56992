"""The chat app on a team's ragapp: sign-in (only when the knowledge root's user store holds users),
failed attempts slowed per user name and per client address, sign-out, and each person's saved
conversations in the sidebar (reopened, deleted, exported as Markdown or JSON).

Streamlit's own st.login needs an OpenID Connect provider; a team without one signs in here with the
passwords `ragapp users password` sets, and a team with single sign-on puts a proxy in front
(`[auth] trusted_proxy_header`), docs/teams.md.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import streamlit as st

from ragapp import Answer, Config
from ragapp.teams import EVERYONE, Principal, UserStore
from ragapp.teams.audit import AuditLog
from ragapp.teams.conversations import Conversations, markdown
from ragapp.teams.limits import PerMinute
from ui.markdown import plain_markdown, safe_markdown
from ui.words import t

COOKIE = "ragapp_session"


@st.cache_resource
def _attempts(per_minute: int) -> PerMinute:
    """Failed sign-ins of every session of this app (per user name and per client address)."""
    return PerMinute(per_minute)


def root_of(config: Config) -> Path:
    return Path(config.ui.knowledge_root)


def signed_in(config: Config) -> Principal | None:
    """Who uses this session: everyone (no users in the store: no sign-in step), the user a trusted
    proxy names, or the user who signed in here or in an earlier session of this browser (its session
    cookie, checked against the store on every run: a removed user, a sign-out or a taken role counts
    at once). None while the sign-in form is shown."""
    store = UserStore(root_of(config))
    if not store.has_users():
        return EVERYONE
    header, peer = config.auth.trusted_proxy_header, st.context.ip_address or ""
    if header and st.context.headers.get(header) and config.auth.from_proxy(peer):
        named = st.context.headers[header].strip()
        who = store.principal(named, "proxy")
        if who is None:
            st.error(t("not_a_user", name=plain_markdown(named)))
        return who
    sent = st.context.cookies.get(COOKIE, "")  # as the browser sent it when this session began
    token = st.session_state.get("session") or sent
    who = store.by_session(token)
    if who is not None:
        st.session_state["session"] = token
        if token != sent:  # signed in in this session: the browser keeps it (set on every run: a script the next
            # run drops may not have run)
            _cookie(token, config.auth.session_hours * 3600)
        return who
    st.session_state.pop("session", None)
    if sent:  # a session that ended (signed out, expired, user removed): the browser forgets it
        _cookie("", 0)
    _sign_in_form(config, store)
    return None


def _cookie(token: str, seconds: int) -> None:
    """Set (or, with 0 seconds, clear) the browser's session cookie: Streamlit sets none itself, so the
    page's own script does. The token is URL-safe base64; the cookie is SameSite=Strict."""
    st.html(f"<script>document.cookie = '{COOKIE}={token}; path=/; max-age={seconds}; SameSite=Strict';</script>",
            unsafe_allow_javascript=True)


def _sign_in_form(config: Config, store: UserStore) -> None:
    st.title("ragapp")
    with st.form("sign_in"):
        name = st.text_input(t("user_name"), key="sign_in_name")
        password = st.text_input(t("password"), type="password", key="sign_in_password")
        pressed = st.form_submit_button(t("sign_in"), type="primary")
    if not pressed or not name:
        return
    peer = st.context.ip_address or "-"
    attempts = _attempts(config.auth.sign_in_attempts_per_minute)
    wait = max(attempts.wait_for(f"user:{name}"), attempts.wait_for(f"client:{peer}"))
    log = AuditLog(root_of(config), config.audit)
    if wait:
        log.write(name, peer, "ui sign-in", 429, note="too many attempts")
        st.error(t("too_many_attempts", seconds=int(wait) + 1))
        return
    who = store.by_password(name, password)
    if who is None:
        attempts.add(f"user:{name}")
        attempts.add(f"client:{peer}")
        time.sleep(1.0)  # every failure costs the guesser a second
        log.write(name, peer, "ui sign-in", 401, note="wrong user name or password")
        st.error(t("wrong_sign_in"))
        return
    log.write(name, peer, "ui sign-in", 200)
    st.session_state["session"] = store.new_session(who.name, config.auth.session_hours)
    st.rerun()


def sign_out_button(config: Config, who: Principal) -> None:
    if who.via != "password":
        return
    st.caption(t("signed_in_as", name=plain_markdown(who.name)))
    if st.button(t("sign_out"), key="sign_out"):
        if st.session_state.get("session"):
            UserStore(root_of(config)).end_session(st.session_state["session"])
        st.session_state.clear()
        st.rerun()


def conversations_of(config: Config) -> Conversations:
    return Conversations(root_of(config), config.auth.max_conversations, config.auth.max_turns)


def keep_turn(config: Config, who: Principal, kb: Path, question: str, answer: Answer) -> None:
    """Save one answer into the session's conversation on `kb` (team mode only)."""
    if who is EVERYONE:
        return
    cited = [{"source": Path(c.source).name, "page": c.page, "quote": c.quote} for c in answer.citations]
    current = st.session_state.setdefault("conversation", {})
    current[kb.name] = conversations_of(config).add_turn(who.name, kb.name, current.get(kb.name, ""), question, answer.text,
                                                         answer.answered, cited)


def render_saved(turn: dict) -> None:
    """An answer of a reopened conversation: its text and numbered citations."""
    st.markdown(safe_markdown(turn["answer"]))
    for n, c in enumerate(turn["citations"], start=1):
        page = f", p. {c['page']}" if c.get("page") is not None else ""
        st.caption(f"[{n}] {plain_markdown(str(c.get('source', '')))}{page}: {plain_markdown(str(c.get('quote', '')))}")


def saved_conversations(config: Config, who: Principal, path: Path) -> None:
    """The sidebar's list of `who`'s conversations on `kb`: open one, start a new one, export, delete."""
    if who is EVERYONE:
        return
    kb, store = path.name, conversations_of(config)
    st.subheader(t("conversations"))
    if st.button(t("new_conversation"), key="new_conversation"):
        st.session_state.setdefault("conversation", {}).pop(kb, None)
        st.session_state.setdefault("history", {})[str(path)] = []
        st.rerun()
    for c in [c for c in store.list(who.name) if c["knowledge_base"] == kb][:20]:
        if st.button(c["title"], key=f"open-{c['id']}", width="stretch"):
            _reopen(store.get(who.name, c["id"]), path)
    current = st.session_state.get("conversation", {}).get(kb)
    found = store.get(who.name, current) if current else None
    if found is None:
        return
    left, middle, right = st.columns(3)
    left.download_button("Markdown", markdown(found), file_name=f"conversation-{current}.md", mime="text/markdown",
                         key="export_md")
    middle.download_button("JSON", json.dumps(found, ensure_ascii=False, indent=1), file_name=f"conversation-{current}.json",
                           mime="application/json", key="export_json")
    if right.button(t("delete"), key="delete_conversation"):
        store.delete(who.name, current)
        st.session_state["conversation"].pop(kb, None)
        st.session_state.setdefault("history", {})[str(path)] = []
        st.rerun()


def _reopen(conversation: dict | None, path: Path) -> None:
    if conversation is None:
        return
    st.session_state.setdefault("conversation", {})[path.name] = conversation["id"]
    st.session_state.setdefault("history", {})[str(path)] = [{"question": turn["question"], "saved": turn}
                                                       for turn in conversation["turns"]]
    st.rerun()
