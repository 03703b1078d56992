"""`ragapp users …` and `ragapp audit`: a team's people and roles, and what they did (docs/teams.md)."""

from __future__ import annotations

import getpass
import json
import re
import sys
import time
from pathlib import Path

import click

from ragapp.teams.access import ROLES
from ragapp.teams.users import UserError, UserStore

root_option = click.option("--knowledge-root", "root", default=None, type=click.Path(file_okay=False),
                           help="Folder whose sub-folders are the knowledge bases (default: [serve] knowledge_root, data).")
config_option = click.option("--config", "config_path", default=None, type=click.Path(dir_okay=False, exists=True),
                             help="TOML config file.")


def _config(config_path: str | None):
    from ragapp.config import Config

    return Config.load(config_path)


def _root(root: str | None, config_path: str | None) -> Path:
    return Path(root) if root else Path(_config(config_path).serve.knowledge_root)


def _logged(root: Path, config_path: str | None, action: str, name: str, kb: str = "") -> None:
    """A user change, in the audit log (by whoever ran the command on this machine)."""
    from ragapp.teams.audit import AuditLog

    AuditLog(root, _config(config_path).audit).write(f"cli:{getpass.getuser()}", "local", action, 0, kb=kb, target=name)


def _grants(items: tuple[str, ...], hint: str = "--grant") -> list[tuple[str, str]]:
    found = []
    for item in items:
        kb, sep, role = item.partition("=")
        if not sep or not kb or role not in ROLES:
            raise click.BadParameter(f"{item!r}: give KB=ROLE, ROLE one of {', '.join(ROLES)}", param_hint=hint)
        found.append((kb, role))
    return found


@click.group(name="users")
def users_command() -> None:
    """People of a team's ragapp and their role on each knowledge base (reader, editor, admin)."""


def _run(fn) -> None:
    try:
        fn()
    except UserError as exc:
        raise click.ClickException(str(exc)) from None


@users_command.command()
@click.argument("name")
@click.option("--admin", is_flag=True, help="Admin of every knowledge base, the users and the audit log.")
@click.option("--grant", "grants", multiple=True, metavar="KB=ROLE", help="A role on a knowledge base (repeatable).")
@root_option
@config_option
def add(name, admin, grants, root, config_path) -> None:
    """Add a user (then give them a key with `users key` or a password with `users password`)."""
    store, where, pairs = UserStore(_root(root, config_path)), _root(root, config_path), _grants(grants)

    def work() -> None:
        store.add(name, admin)
        for kb, role in pairs:
            store.grant(name, kb, role)
    _run(work)
    _logged(where, config_path, "users add", name)
    click.echo(f"added {name}" + (" (admin)" if admin else "") + "".join(f"; {role} of {kb}" for kb, role in pairs))


@users_command.command()
@click.argument("name")
@click.argument("grants", nargs=-1, required=True, metavar="KB=ROLE...")
@root_option
@config_option
def grant(name, grants, root, config_path) -> None:
    """Give NAME a role on knowledge bases (replacing the role they had there)."""
    store, where = UserStore(_root(root, config_path)), _root(root, config_path)
    for kb, role in _grants(grants, "KB=ROLE"):
        _run(lambda kb=kb, role=role: store.grant(name, kb, role))
        _logged(where, config_path, f"users grant {role}", name, kb)
        click.echo(f"{name} is {role} of {kb}")


@users_command.command()
@click.argument("name")
@click.argument("kbs", nargs=-1, required=True, metavar="KB...")
@root_option
@config_option
def revoke(name, kbs, root, config_path) -> None:
    """Take NAME's role on knowledge bases away (in force on their next request)."""
    store, where = UserStore(_root(root, config_path)), _root(root, config_path)
    for kb in kbs:
        _run(lambda kb=kb: store.revoke(name, kb))
        _logged(where, config_path, "users revoke", name, kb)
        click.echo(f"{name} holds no role on {kb}")


@users_command.command(name="list")
@click.option("--json", "as_json", is_flag=True)
@root_option
@config_option
def list_users(as_json, root, config_path) -> None:
    """Every user with their roles, live key ids and whether a password is set."""
    found = UserStore(_root(root, config_path)).list()
    if as_json:
        click.echo(json.dumps(found, ensure_ascii=False, indent=1))
        return
    for u in found:
        roles = ", ".join(f"{kb}={r}" for kb, r in u["roles"].items()) or "-"
        click.echo(f"{u['name']}{' (admin)' if u['admin'] else ''}: {roles}; keys {', '.join(u['keys']) or '-'}; "
                   f"password {'set' if u['password'] else 'not set'}")


@users_command.command()
@click.argument("name")
@root_option
@config_option
def remove(name, root, config_path) -> None:
    """Remove a user, their roles and keys (refused on their next request)."""
    where = _root(root, config_path)
    _run(lambda: UserStore(where).remove(name))
    _logged(where, config_path, "users remove", name)
    click.echo(f"removed {name}")


@users_command.command()
@click.argument("name")
@click.option("--revoke", "revoke_id", default=None, metavar="KEY_ID", help="Revoke this key instead of making one.")
@click.option("--revoke-all", is_flag=True, help="Revoke every key of NAME instead of making one.")
@root_option
@config_option
def key(name, revoke_id, revoke_all, root, config_path) -> None:
    """Make a new API key for NAME and print it (once: only its hash is kept), or revoke keys."""
    store, where = UserStore(_root(root, config_path)), _root(root, config_path)
    if revoke_id or revoke_all:
        count = 0

        def work() -> None:
            nonlocal count
            count = store.revoke_key(name, revoke_id or "")
        _run(work)
        _logged(where, config_path, "users key revoke", name)
        click.echo(f"revoked {count} key(s) of {name}")
        return
    made: list[str] = []
    _run(lambda: made.extend(store.new_key(name)))
    _logged(where, config_path, f"users key {made[0]}", name)
    click.echo(made[1])
    click.echo(f"(key id {made[0]}; shown once: keep it in a password manager)", err=True)


@users_command.command()
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (one line).")
@root_option
@config_option
def password(name, password_stdin, root, config_path) -> None:
    """Set NAME's password for the chat app's sign-in (asked twice, never echoed)."""
    if password_stdin:
        given = sys.stdin.readline().rstrip("\n")
    else:
        given = str(click.prompt(f"password for {name}", hide_input=True, confirmation_prompt=True))
    where = _root(root, config_path)
    _run(lambda: UserStore(where).set_password(name, given))
    _logged(where, config_path, "users password", name)
    click.echo(f"password of {name} set")


def _since(text: str) -> float:
    """An ISO date/time or an age like 30m, 12h, 7d, as a Unix time."""
    age = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if age:
        return time.time() - int(age.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[age.group(2)]
    from datetime import datetime

    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise click.BadParameter(f"{text!r}: give an ISO date (2026-12-01, 2026-12-01T09:00) or an age (30m, 12h, 7d)",
                                 param_hint="--since") from None


@click.command(name="audit")
@click.option("--user", default="", help="Only this user's actions.")
@click.option("--kb", default="", help="Only actions on this knowledge base.")
@click.option("--since", default="", help="An ISO date/time or an age (30m, 12h, 7d).")
@click.option("--limit", type=click.IntRange(1, 1_000_000), default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, as stored.")
@root_option
@config_option
def audit_command(user, kb, since, limit, as_json, root, config_path) -> None:
    """Read the audit log of a team's server: who did what, when, on which knowledge base, and the outcome."""
    from ragapp.teams.audit import AuditLog

    lines = AuditLog(_root(root, config_path), _config(config_path).audit).read(user, kb, _since(since) if since else 0.0, limit)
    for entry in lines:
        if as_json:
            click.echo(json.dumps(entry, ensure_ascii=False))
            continue
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.get("time", 0)))
        what = " ".join(str(entry.get(k, "")) for k in ("target", "kb", "document") if entry.get(k))
        click.echo(f"{when} {entry.get('user')} {entry.get('client')} {entry.get('action')} {what} -> {entry.get('status')}"
                   + (f" ({entry['note']})" if entry.get("note") else ""))
