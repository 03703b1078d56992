"""Each person's fair share of one server: requests per minute, questions at once, turns at the model
taken in rotation between people (the in-process model answers one question at a time), and failed
sign-ins slowed per user name and per client address."""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import OrderedDict, deque


class Limited(Exception):
    """Over a limit: `retry_after` seconds until the next try may pass."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after))


class PerMinute:
    """At most `limit` events per key in any 60 s (a sliding window; at most `keys` keys remembered)."""

    def __init__(self, limit: int, keys: int = 10_000) -> None:
        self.limit, self.keys = limit, keys
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def wait_for(self, key: str, now: float | None = None) -> float:
        """Seconds until `key` may have another event (0: now)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self._seen.get(key)
            while times and times[0] <= now - 60:
                times.popleft()
            return 0.0 if not times or len(times) < self.limit else times[0] + 60 - now

    def add(self, key: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._seen.setdefault(key, deque()).append(now)
            self._seen.move_to_end(key)
            while len(self._seen) > self.keys:
                self._seen.popitem(last=False)

    def take(self, key: str, what: str) -> None:
        """Count one event of `key`, or Limited when it has had `limit` in the last minute."""
        wait = self.wait_for(key)
        if wait:
            raise Limited(f"{what}: more than {self.limit} a minute; try again in {math.ceil(wait)} s", wait)
        self.add(key)


class Turns:
    """Who answers next: each person may hold `per_user` questions (answered or waiting), at most
    `max_waiting` wait across everyone (more is Limited), and the model goes to the person waiting who
    had it longest ago, each one's questions first-come."""

    def __init__(self, per_user: int, at_once: int = 1, typical_s: float = 3.0, max_waiting: int = 16) -> None:
        if min(per_user, at_once, max_waiting) < 1 or typical_s <= 0:
            raise ValueError("per_user, at_once and max_waiting must be at least 1, typical_s above 0")
        self.per_user, self.at_once, self.typical_s, self.max_waiting = per_user, at_once, typical_s, max_waiting
        self._held: dict[str, int] = {}  # questions per user, answering or waiting
        self._waiting: dict[str, deque[object]] = {}  # user → tickets, first-come (users in arrival order)
        self._served: dict[str, int] = {}  # user → when they last got the model (a counter)
        self._clock = itertools.count(1)
        self._running = 0
        self._cond = threading.Condition()

    def admit(self, user: str, limited: bool = True) -> Turn:
        """A place in the queue for one of `user`'s questions (Limited when they hold `per_user` and
        `limited`); the model is theirs inside `with` the returned turn, which waits for it."""
        with self._cond:
            if limited and self._held.get(user, 0) >= self.per_user:
                raise Limited(f"{user} has {self.per_user} questions being answered; ask again when one is done",
                              self.typical_s * self._held[user])
            waiting = sum(self._held.values()) - self._running  # queued, or admitted and about to be
            if waiting >= self.max_waiting:
                raise Limited(f"{waiting} questions are waiting for the model; ask again in a moment",
                              self.typical_s * (waiting + 1) / self.at_once)
            self._held[user] = self._held.get(user, 0) + 1
        return Turn(self, user)

    def waiting(self) -> int:
        """How many questions are in the queue for the model now."""
        with self._cond:
            return sum(len(tickets) for tickets in self._waiting.values())

    def _wait(self, user: str) -> None:
        ticket = object()
        with self._cond:
            self._waiting.setdefault(user, deque()).append(ticket)
            while not (self._running < self.at_once and self._next() is ticket):
                self._cond.wait()
            self._take(user)

    def _leave(self, user: str, ran: bool) -> None:
        with self._cond:
            self._running -= ran
            self._held[user] -= 1
            if not self._held[user]:
                del self._held[user]
            self._cond.notify_all()

    def _next(self) -> object | None:
        """The ticket whose turn it is: the first question of the person waiting who was served longest
        ago (never served first), so one person's queue never stands before another's next question."""
        if not self._waiting:
            return None
        user = min(self._waiting, key=lambda u: self._served.get(u, 0))
        return self._waiting[user][0]

    def _take(self, user: str) -> None:
        tickets = self._waiting[user]
        tickets.popleft()
        if not tickets:
            del self._waiting[user]
        self._served[user] = next(self._clock)
        if len(self._served) > 10_000:
            self._served.pop(next(iter(self._served)))
        self._running += 1
        self._cond.notify_all()


class Turn:
    """One admitted question: `with` it, the model is its own; leaving gives the place up (also unused)."""

    def __init__(self, turns: Turns, user: str) -> None:
        self.turns, self.user, self._state = turns, user, "admitted"

    def __enter__(self) -> Turn:
        self.turns._wait(self.user)
        self._state = "running"
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Give the place up (idempotent)."""
        if self._state != "closed":
            self.turns._leave(self.user, self._state == "running")
            self._state = "closed"

    def __del__(self) -> None:
        # A streamed answer whose client left before its first byte never enters its turn: the place
        # is given back when the turn is collected, or its owner would stay over their limit.
        self.close()
