"""The edge's chat history on disk (`history.db`, `--history-db`): the messages
`relay/history.py` keeps, written to SQLite so that a relay restarted keeps them. Each message
kept is queued; every FLUSH_S the queue is written in one transaction on a worker thread (the
event loop never waits on the disk), and what fell out of the bounds (age, count per channel)
is deleted. At start the recent messages of every channel are read back into the history.

One writer: the relay that owns the file. A write that fails (a full disk) is logged and
counted; the history in memory goes on, and the next flush tries again with what is queued
(up to MAX_QUEUED messages; beyond, the oldest queued are given up, counted)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections import deque
from pathlib import Path

from relay.history import ChannelKey, History, Kept

log = logging.getLogger("skymesh.relay")

FLUSH_S = 0.5
MAX_QUEUED = 100_000
SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    zone TEXT NOT NULL, channel TEXT NOT NULL, n INTEGER NOT NULL, at REAL NOT NULL,
    uid TEXT NOT NULL, mid INTEGER NOT NULL, body TEXT NOT NULL, stream TEXT, seq INTEGER,
    PRIMARY KEY (zone, channel, n)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS messages_at ON messages (at);
"""


class HistoryStoreError(OSError):
    """The file cannot be used as a history store (naming it)."""


class HistoryStore:
    def __init__(self, path: Path | str, history: History) -> None:
        self.path = Path(path)
        self.history = history
        self.queue: deque[tuple[ChannelKey, Kept]] = deque()
        self.written = 0
        self.failed_writes = 0
        self.given_up = 0
        self.db: sqlite3.Connection | None = None
        self.task: asyncio.Task | None = None
        self.lock = threading.Lock()  # one writer at a time (a cancelled flush may run on)

    def open(self) -> int:
        """Open (or create) the file and read what it keeps back into the history; how many
        messages. HistoryStoreError when the file is not usable."""
        try:
            self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
            return self._load(time.time())
        except sqlite3.Error as e:
            raise HistoryStoreError(f"history store {self.path}: {e}") from None

    def _load(self, now: float) -> int:
        h = self.history
        rows = self.db.execute(
            "SELECT zone, channel, n, at, uid, mid, body, stream, seq FROM ("
            " SELECT *, ROW_NUMBER() OVER (PARTITION BY zone, channel ORDER BY n DESC) AS r"
            " FROM messages WHERE at >= ?) WHERE r <= ? ORDER BY zone, channel, n",
            (now - h.max_age_s, h.max_messages)).fetchall()
        by_channel: dict[ChannelKey, list[Kept]] = {}
        for zone, channel, n, at, uid, mid, body, stream, seq in rows:
            by_channel.setdefault((zone, channel), []).append(
                Kept(n, at, uid, mid, body, stream, seq))
        for key, kept in by_channel.items():
            h.restore(key, kept, now)
        return len(rows)

    def add(self, key: ChannelKey, kept: Kept) -> None:
        """A message the history kept: written at the next flush."""
        self.queue.append((key, kept))
        if len(self.queue) > MAX_QUEUED:
            self.queue.popleft()
            self.given_up += 1

    async def run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            await self.flush()

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.run())

    async def flush(self) -> None:
        if not self.queue or self.db is None:
            return
        batch = list(self.queue)
        try:
            await asyncio.to_thread(self._write, batch, time.time())
        except sqlite3.Error as e:
            self.failed_writes += 1
            log.error("history store %s: %s (kept in memory; tried again)", self.path, e)
            return
        for _ in batch:
            self.queue.popleft()
        self.written += len(batch)

    def _write(self, batch: list[tuple[ChannelKey, Kept]], now: float) -> None:
        with self.lock:
            self._write_locked(batch, now)

    def _write_locked(self, batch: list[tuple[ChannelKey, Kept]], now: float) -> None:
        db = self.db
        newest: dict[ChannelKey, int] = {}
        db.execute("BEGIN")
        try:
            db.executemany(
                "INSERT OR REPLACE INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(zone, channel, k.n, k.at, k.uid, k.mid, k.body, k.stream, k.seq)
                 for (zone, channel), k in batch])
            for key, k in batch:
                newest[key] = max(k.n, newest.get(key, 0))
            db.executemany("DELETE FROM messages WHERE zone = ? AND channel = ? AND n <= ?",
                           [(zone, channel, n - self.history.max_messages)
                            for (zone, channel), n in newest.items()])
            db.execute("DELETE FROM messages WHERE at < ?", (now - self.history.max_age_s,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        with contextlib.suppress(sqlite3.Error):
            await self.flush()
        with self.lock:
            if self.db is not None:
                self.db.close()
                self.db = None
