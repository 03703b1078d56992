"""A team on one ragapp: people and their roles (users.py), what a role allows (access.py), the audit
log (audit.py), each person's limits (limits.py) and saved conversations (conversations.py).
docs/teams.md is the guide."""

from ragapp.teams.access import EVERYONE, ROLES, Principal
from ragapp.teams.users import UserError, UserStore

__all__ = ["EVERYONE", "ROLES", "Principal", "UserError", "UserStore"]
