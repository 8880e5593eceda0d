"""The emulator's entries: kept in timestamp order, visible only after the ingestion delay.

Cloud Logging shows an entry to readers some time after it was written (usually
seconds). Tests set that delay to see what vnode does meanwhile, so every entry keeps
the monotonic instant it was received, and reads compare it with the delay in force at
the time of the read. Listing walks the entries in timestamp order (ties in arrival
order) from a position key, which is also what a page token carries: a page boundary
stays right while new entries arrive.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from vnode.sandbox.logging.filters import Fields, Predicate

Key = tuple[int, int]
"""(timestamp in ns, arrival sequence number): the total order of the log."""


@dataclass(slots=True)
class Stored:
    key: Key
    received_at: float
    """Monotonic seconds (the emulator's clock) when the entry was written."""
    fields: Fields
    entry: Any
    """The raw ``google.logging.v2.LogEntry`` protobuf message, as served."""
    project: str


@dataclass
class Counters:
    """What the emulator did, for tests that prove a read stayed small."""

    list_calls: int = 0
    listed: int = 0
    """Entries returned by ListLogEntries."""
    tailed: int = 0
    """Entries sent on TailLogEntries streams."""
    written: int = 0
    tail_sessions: int = 0
    """Tail streams that started watching (entries written after this count are theirs)."""
    by_method: dict[str, int] = field(default_factory=dict)


class EntryStore:
    def __init__(self) -> None:
        self._keys: list[Key] = []
        self._entries: list[Stored] = []
        self._arrivals: list[Stored] = []  # arrival order: entry n has sequence number n + 1
        self.lock = threading.Lock()
        """Held while adding and while one list call walks (writers may be threads)."""
        self.changed = asyncio.Event()
        """Set (and replaced) by :meth:`notify` after writes, to wake the tail streams."""

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, stored: Stored) -> None:
        """Store ``stored``; its key's sequence number is assigned here."""
        # Entries mostly arrive in timestamp order: the insort is then an append.
        with self.lock:
            stored.key = (stored.key[0], len(self._arrivals) + 1)
            i = bisect.bisect_right(self._keys, stored.key)
            self._keys.insert(i, stored.key)
            self._entries.insert(i, stored)
            self._arrivals.append(stored)

    def notify(self) -> None:
        """Wake the tail streams (on the loop they wait on)."""
        event, self.changed = self.changed, asyncio.Event()
        event.set()

    def walk(self, *, descending: bool, after: Key | None) -> Iterator[Stored]:
        """Entries in order, starting strictly past ``after`` (a previous page's end)."""
        if not descending:
            start = 0 if after is None else bisect.bisect_right(self._keys, after)
            for i in range(start, len(self._entries)):
                yield self._entries[i]
        else:
            stop = len(self._entries) if after is None else bisect.bisect_left(self._keys, after)
            for i in range(stop - 1, -1, -1):
                yield self._entries[i]

    def received_since(self, seq: int) -> list[Stored]:
        """Entries with an arrival number above ``seq`` (what a tail has not seen yet)."""
        return self._arrivals[seq:]

    @property
    def last_seq(self) -> int:
        return len(self._arrivals)


def matches(stored: Stored, projects: set[str], pred: Predicate) -> bool:
    return stored.project in projects and pred(stored.fields)


def encode_token(key: Key, query_hash: str) -> str:
    raw = json.dumps([key[0], key[1], query_hash]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, query_hash: str) -> Key:
    """The position a page token names; ValueError when it is not ours or not for
    this query (the service refuses a token reused with another filter)."""
    try:
        padded = token + "=" * (-len(token) % 4)
        ts, seq, qh = json.loads(base64.urlsafe_b64decode(padded))
    except Exception as err:
        raise ValueError("invalid page token") from err
    if qh != query_hash:
        raise ValueError("page token does not match the request")
    return int(ts), int(seq)
