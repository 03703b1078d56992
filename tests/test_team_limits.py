"""A team's limits and records on real threads, files and SQLite: per-minute counts, fair turns at the
model, the audit log's rotation and crash-cut lines, bounded conversations, the user store's hashes."""

from __future__ import annotations

import json
import threading
import time

import pytest

from ragapp.config_teams import AuditConfig, AuthConfig
from ragapp.errors import ConfigError
from ragapp.teams import UserError, UserStore
from ragapp.teams.audit import AuditLog
from ragapp.teams.conversations import Conversations, markdown
from ragapp.teams.limits import Limited, PerMinute, Turns
from ragapp.teams.users import LiveUsers

pytestmark = pytest.mark.unit


def test_per_minute_counts_a_sliding_minute_per_key():
    limit = PerMinute(3)
    for n in range(3):
        limit.add("ann", now=100.0 + n)
    assert limit.wait_for("ann", now=110.0) == pytest.approx(50.0) and limit.wait_for("bo", now=110.0) == 0
    assert limit.wait_for("ann", now=160.5) == 0  # the first left the window
    with pytest.raises(Limited) as over:
        for _ in range(4):
            limit.take("cy", "cy")
    assert over.value.retry_after == 60


def test_a_flooder_never_stands_before_another_persons_next_question():
    """Flooder f holds the model and has one question waiting; a's question, asked after, goes next."""
    turns, order, started = Turns(per_user=2), [], threading.Event()

    def ask(user: str, n: int, hold: float) -> None:
        with turns.admit(user):
            started.set()
            order.append((user, n))
            time.sleep(hold)

    first = threading.Thread(target=ask, args=("f", 0, 0.3))
    first.start()
    assert started.wait(5)
    second = threading.Thread(target=ask, args=("f", 1, 0.05))
    second.start()
    deadline = time.monotonic() + 5
    while turns.waiting() < 1 and time.monotonic() < deadline:  # f's second question is in the queue
        time.sleep(0.005)
    with pytest.raises(Limited):  # a third of f's at once is refused at the door
        turns.admit("f")
    mine = threading.Thread(target=ask, args=("a", 0, 0.05))
    mine.start()
    for t in (first, second, mine):
        t.join(5)
    assert order == [("f", 0), ("a", 0), ("f", 1)]


def test_the_queue_for_the_model_is_bounded_with_a_retry_after():
    """One question answering, two waiting (of anyone, users or not): a fourth is refused with the wait
    it would have had; when one is done there is room again."""
    turns, inside, release = Turns(per_user=10, max_waiting=2, typical_s=3.0), threading.Event(), threading.Event()

    def answering() -> None:
        with turns.admit("local", limited=False):
            inside.set()
            release.wait(10)

    t = threading.Thread(target=answering)
    t.start()
    assert inside.wait(5)
    waiting = [turns.admit("ann"), turns.admit("local", limited=False)]
    with pytest.raises(Limited, match="2 questions are waiting for the model") as refused:
        turns.admit("bo", limited=False)
    assert refused.value.retry_after == 9  # three answers of 3 s before it
    waiting.pop().close()
    turns.admit("bo").close()
    release.set()
    t.join(5)
    with pytest.raises(ValueError):
        Turns(per_user=1, max_waiting=0)


def test_an_admitted_turn_never_used_gives_its_place_back():
    turns = Turns(per_user=1)
    turns.admit("f").close()  # e.g. a stream whose client went away before it began
    with turns.admit("f"):
        pass
    turns.admit("f")  # dropped unused, never closed: collected, it gives the place back
    import gc

    gc.collect()
    with turns.admit("f"):
        pass


def test_the_audit_log_rotates_keeps_and_skips_a_cut_line(tmp_path):
    log = AuditLog(tmp_path, AuditConfig(max_mb=1, keep=2))
    big = "x" * 3000
    for n in range(1200):  # about 3.6 MB: rotated past 1 MB, at most 2 old files kept
        log.write("ann" if n % 2 else "bo (key 1a2b)", "127.0.0.1", "POST /v1/search", 200, kb="hr", question=f"{n} {big}")
    files = sorted(p.name for p in (tmp_path / ".ragapp" / "audit").iterdir())
    assert files == ["audit.1.jsonl", "audit.2.jsonl", "audit.jsonl"]
    with open(log.path, "a", encoding="utf-8") as f:
        f.write('{"time": 1, "user": "cut')  # a crash in the middle of a line
    lines = log.read(user="bo", limit=100_000)
    assert lines and all(x["user"] == "bo (key 1a2b)" for x in lines)
    assert int(lines[-1]["question"].split()[0]) == 1198
    quiet = AuditLog(tmp_path / "q", AuditConfig(questions=False))
    quiet.write("ann", "::1", "POST /v1/chat/completions", 200, question="salary of the CEO?")
    assert "salary" not in quiet.path.read_text() and json.loads(quiet.path.read_text())["question"] == "(18 characters)"


def test_conversations_are_bounded_and_each_persons_own(tmp_path):
    store = Conversations(tmp_path, max_conversations=3, max_turns=2)
    ids = [store.add_turn("ann", "hr", "", f"q{n}", f"a{n}", True, []) for n in range(5)]
    assert [c["id"] for c in store.list("ann")] == ids[:1:-1]  # the 3 latest, latest first
    keep = ids[-1]
    for n in range(3):
        assert store.add_turn("ann", "hr", keep, f"more {n}", "b", True, [{"source": "f.txt", "page": 2, "quote": "q"}]) == keep
    assert [t["question"] for t in store.get("ann", keep)["turns"]] == ["more 1", "more 2"]
    assert store.get("bo", keep) is None and not store.delete("bo", keep) and store.list("bo") == []
    assert store.add_turn("bo", "hr", keep, "mine?", "no", False, []) != keep  # not theirs: a new one
    assert '1. f.txt, page 2: "q"' in markdown(store.get("ann", keep))


def test_the_user_store_keeps_only_hashes_and_checks_what_enters(tmp_path):
    store = UserStore(tmp_path)
    assert not store.has_users()
    store.add("ann", admin=False)
    store.grant("ann", "hr", "reader")
    _, key = store.new_key("ann")
    store.set_password("ann", "a long secret phrase")
    session, ended = store.new_session("ann", hours=1), store.new_session("ann", hours=1)
    store.end_session(ended)
    data = store.path.read_bytes() + b"".join(p.read_bytes() for p in store.path.parent.glob("users.db*"))
    assert key.encode() not in data and key.split("_")[-1].encode() not in data and b"a long secret phrase" not in data
    assert session.encode() not in data
    assert store.by_session(session).name == "ann" and store.by_session(ended) is None and store.by_session("x" * 43) is None
    assert store.by_password("ann", "a long secret phrase").roles == {"hr": "reader"}
    assert store.by_password("ann", "wrong") is None and store.by_password("nobody", "x" * 10) is None
    for bad in (lambda: store.add("ann"), lambda: store.add("../x"), lambda: store.grant("ann", "hr", "owner"),
                lambda: store.set_password("ann", "short"), lambda: store.revoke("ann", "finance"), lambda: store.remove("zed")):
        with pytest.raises(UserError):
            bad()
    assert (store.path.stat().st_mode & 0o777) == 0o600


def test_a_servers_view_of_the_store_follows_every_change_at_once(tmp_path):
    live, cli = LiveUsers(tmp_path), UserStore(tmp_path)  # two connections, as the server and `ragapp users`
    assert not live.has_users()
    cli.add("ann")
    key_id, key = cli.new_key("ann")
    assert live.by_key(key)[0].name == "ann" and live.principal("ann", "key").roles == {}
    for n in range(30):  # each change seen by the very next read, however soon it comes
        cli.grant("ann", f"kb{n}", "reader")
        assert f"kb{n}" in live.principal("ann", "key").roles
    cli.revoke_key("ann", key_id)
    assert live.by_key(key) == (None, f"revoked key of ann (key {key_id})")
    cli.remove("ann")
    assert live.principal("ann", "key") is None and not live.has_users()
    for f in cli.path.parent.glob("users.db*"):  # the file replaced by a new one: read anew
        f.unlink()
    UserStore(tmp_path).add("bo")
    assert live.principal("bo", "proxy").name == "bo" and live.by_key(key) == (None, "unknown")


def test_the_audit_log_keeps_every_line_of_many_threads_across_rotations(tmp_path):
    log = AuditLog(tmp_path, AuditConfig(max_mb=1, keep=20))

    def writer(t: int) -> None:
        for n in range(150):
            log.write(f"u{t}", "127.0.0.1", "GET /v1/models", 429, question=f"{t}:{n} " + "y" * 2000)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seen = sorted(tuple(map(int, x["question"].split()[0].split(":"))) for x in log.read(limit=100_000))
    assert seen == [(t, n) for t in range(8) for n in range(150)]  # 2.4 MB over three files, none lost or doubled
    assert len(list(log.folder.glob("audit.*.jsonl"))) == 2


def test_auth_settings_are_checked_where_they_enter():
    assert AuthConfig(trusted_proxy_header="X-Forwarded-User", trusted_proxies=("10.0.0.0/24",)).from_proxy("10.0.0.7")
    assert not AuthConfig(trusted_proxy_header="X-Forwarded-User", trusted_proxies=("10.0.0.0/24",)).from_proxy("10.0.1.7")
    for bad in ({"trusted_proxies": ("10.0.0.1",)}, {"trusted_proxy_header": "X", "trusted_proxies": ("ten",)},
                {"requests_per_minute": 0}):
        with pytest.raises(ConfigError):
            AuthConfig(**bad)


def test_a_user_name_header_is_trusted_only_from_the_listed_proxies(tmp_path):
    from ragapp.config import Config
    from ragapp.serve.people import Doorman, Refused

    store = UserStore(tmp_path)
    store.add("ann")
    store.grant("ann", "hr", "reader")
    config = Config.from_dict({"auth": {"trusted_proxy_header": "X-Forwarded-User", "trusted_proxies": ["10.0.0.0/24"]}})
    door = Doorman(tmp_path, frozenset(), config)
    assert door.identify(None, {"x-forwarded-user": "ann"}, "10.0.0.7").roles == {"hr": "reader"}
    for peer in ("10.0.1.7", "127.0.0.1"):  # anyone else who sends the header is nobody
        assert isinstance(door.identify(None, {"x-forwarded-user": "ann"}, peer), Refused)
    assert isinstance(door.identify(None, {"x-forwarded-user": "mallory"}, "10.0.0.7"), Refused)


def test_one_person_alone_has_no_sign_in_no_limits_and_no_team_files(tmp_path):
    from ragapp.config import Config
    from ragapp.serve.people import Doorman
    from ragapp.teams import EVERYONE

    door = Doorman(tmp_path, frozenset(), Config())
    who = door.identify(None, {}, "127.0.0.1")
    assert who is EVERYONE and not door.shared and not door.limited(who)
    assert not (tmp_path / ".ragapp").exists()
