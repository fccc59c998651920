"""The sender loop: one process serves every due device, earliest slot first.

A loop keeps, for each device it holds, the next moment pacing allows a send (its slot),
always serves the earliest, and sleeps until the next one: an idle or waiting device
costs nothing, so one process serves hundreds of numbers. A slot's work (`device_step`:
claim, POST, record) runs in a small bounded pool of threads, so that a slow answer for
one device never delays another's slot.

Leases are the guarantee that a device is served by one loop at a time, and they live in
PostgreSQL: a loop takes free devices that have work with one `UPDATE … FOR UPDATE SKIP
LOCKED` (two loops never take the same row), renews all its leases with one statement a
third of a lease apart, and the claim itself checks the lease (claims.py), so a loop that
stalled past its lease cannot send for a device another loop took over. Loops announce
themselves (`SenderLoop` rows) and each takes its fair share of the devices with work; a
loop holding more than its share hands the excess over. A loop stopped with SIGTERM or
SIGINT finishes the sends in flight, records them, releases its leases and exits; one that
died (SIGKILL, power cut) loses its devices to the others within one lease.

Why a dedicated process (`manage.py run_senders`, under the supervisor of `make run` and
its own systemd unit) rather than a long-running django-q2 task: a task that never ends
fights the broker. django-q2 redelivers a task whose result is not saved within `retry`
seconds (a second loop, fed by the broker) and kills it at `timeout`; its workers take
SIGTERM from the sentinel, which gives a task no way to finish the send in flight and
release its leases within 2 s; and a task runs in a forked worker whose threads and memory
belong to the cluster. A process of our own owns its signals, its thread pool, its
database connections and its restart policy (the supervisor or systemd restarts it), and
several of them on several hosts share the devices through PostgreSQL alone.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import timedelta

from django.conf import settings
from django.db import connection

from campaigns.models import Campaign
from config import clock
from messaging.claims import BEYOND_THE_CAMPAIGN
from messaging.models import Device, Message
from messaging.models import SenderLoop as Presence
from messaging.sending import SenderExit, Step, device_step

logger = logging.getLogger(__name__)

_DEVICE, _MESSAGE, _CAMPAIGN = Device._meta.db_table, Message._meta.db_table, Campaign._meta.db_table
_CAMPAIGN_DEVICE = Campaign.devices.through._meta.db_table
# A free device (no live lease, not halted) with a message due now: looked for through its
# sending campaigns (an index probe each, as the claim does), so that a paused campaign's
# waiting messages are not walked at every poll; or with a test send or an opt-out confirmation
# due (they leave whatever their campaign's status: a probe of the small index of a device's
# pending answers). OFFSET 0 keeps the campaign's probe a probe per sending campaign: without
# it, beside the OR, PostgreSQL may join every pending message of the device first.
_FREE_WITH_WORK = f"""
d.halted_at IS NULL
AND (d.lease_owner = '' OR d.lease_expires_at IS NULL OR d.lease_expires_at < %(now)s)
AND NOT (d.id = ANY(%(parked)s::bigint[])) AND (%(only)s::bigint[] IS NULL OR d.id = ANY(%(only)s::bigint[]))
AND (EXISTS (SELECT 1 FROM {_CAMPAIGN_DEVICE} cd
             JOIN {_CAMPAIGN} c ON c.id = cd.campaign_id AND c.status = 'sending'
             WHERE cd.device_id = d.id AND EXISTS (
               SELECT 1 FROM {_MESSAGE} m WHERE m.campaign_id = cd.campaign_id AND m.device_id = d.id
                 AND m.status = 'pending' AND m.next_attempt_at <= %(now)s OFFSET 0))
     OR EXISTS (SELECT 1 FROM {_MESSAGE} m WHERE m.device_id = d.id AND m.status = 'pending'
                  AND m.kind IN ({BEYOND_THE_CAMPAIGN}) AND m.next_attempt_at <= %(now)s))
"""
_COUNT_FREE_SQL = f"SELECT count(*) FROM {_DEVICE} d WHERE {_FREE_WITH_WORK}"
_ACQUIRE_SQL = f"""
WITH free AS (
  SELECT d.id FROM {_DEVICE} d WHERE {_FREE_WITH_WORK}
  ORDER BY d.id LIMIT %(limit)s FOR UPDATE OF d SKIP LOCKED
)
UPDATE {_DEVICE} d SET lease_owner = %(owner)s, lease_expires_at = %(until)s
FROM free WHERE d.id = free.id RETURNING d.id
"""
_RENEW_SQL = f"""
UPDATE {_DEVICE} SET lease_expires_at = %(until)s
WHERE lease_owner = %(owner)s AND lease_expires_at >= %(now)s RETURNING id
"""
_RELEASE_SQL = f"""
UPDATE {_DEVICE} SET lease_owner = '', lease_expires_at = NULL
WHERE lease_owner = %(owner)s AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s::bigint[]))
"""


def _lease() -> timedelta:
    return timedelta(seconds=settings.SENDER_LEASE_SECONDS)


class SenderLoop:
    """Serves the devices it holds, earliest slot first, until `stop()`.

    `threads=0` runs every step in the calling thread (tests on a simulated clock, where
    `clock.sleep` moves time), and an error stops the loop there; with threads, an error is
    logged and the device looked at again a poll later. `only` restricts the loop to some
    devices.
    """

    def __init__(self, *, owner: str | None = None, threads: int | None = None, only=None):
        self.owner = owner or uuid.uuid4().hex
        self.threads = settings.SENDER_LOOP_THREADS if threads is None else threads
        self.only = sorted(only) if only else None
        self.slots: dict[int, tuple] = {}  # device id → (its next look, the snapshot or None)
        self.busy: dict[Future, int] = {}  # a step running in the pool → its device
        self.parked: dict[int, object] = {}  # device id → not before (let go at its daily limit)
        self.exits: dict[int, SenderExit] = {}  # why each device was last let go
        self.lost: set[int] = set()  # leases that lapsed while a step ran: claim nothing more
        self.stopping = threading.Event()
        self.renewed_at = self.polled_at = None
        self._pool: ThreadPoolExecutor | None = None
        self._thread_connections: set = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()  # a step finished, a wake-up came, or stop()
        self._woken = False  # a wake-up came (NOTIFY): look for due devices now
        self._woken_devices: set[str] = set()  # their ids (NOTIFY payloads), to lift their parking
        self._listener: threading.Thread | None = None

    # --- Running -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to stop (safe from a signal handler): nothing more is claimed."""
        self.stopping.set()
        self._wake.set()

    def held(self) -> set[int]:
        return set(self.slots) | set(self.busy.values())

    def run(self, *, until_idle: bool = False) -> dict[int, SenderExit]:
        """Serve until stopped (or, with `until_idle`, until no device has work now)."""
        if self.threads:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="sender")
            self._listener = threading.Thread(target=self._listen, name="sender-wakeups", daemon=True)
            self._listener.start()
        try:
            self._announce(clock.now())
            while not self.stopping.is_set():
                self._collect()
                now = clock.now()
                self._upkeep(now)
                self._start_due(now)
                if until_idle and not self.slots and not self.busy:
                    break
                self._wait(clock.now())
        finally:
            self._shutdown()
        return self.exits

    def _start_due(self, now) -> None:
        due = sorted((at, device_id) for device_id, (at, _) in self.slots.items() if at <= now)
        for _, device_id in due:
            if self._pool is not None and len(self.busy) >= self.threads:
                return
            _, snapshot = self.slots.pop(device_id)
            if self._pool is None:
                self._finish(device_id, self._step(device_id, snapshot))
            else:
                future = self._pool.submit(self._step, device_id, snapshot)
                future.add_done_callback(lambda _: self._wake.set())
                self.busy[future] = device_id

    def _step(self, device_id: int, snapshot) -> Step:
        """One device's slot; a failure of its own is logged and the device looked at again
        a poll later: one bad row never stops the loop."""
        if self._pool is not None:
            self._remember_connection()
        try:
            keep = self._keeps(device_id)
            return device_step(device_id=device_id, owner=self.owner, device=snapshot, keep=keep)
        except Exception:
            if self._pool is None:  # in the caller's thread (tests, a shell): the caller sees it
                raise
            logger.exception("sender loop: device %s failed its step; looking again later", device_id)
            _drop_broken_connection()
            return Step(None, clock.now() + timedelta(seconds=settings.SENDER_LOOP_POLL_SECONDS))

    def _keeps(self, device_id: int):
        def keep() -> bool:
            if self._pool is None:  # in this thread: keep the leases on time between sends
                self._renew_if_due(clock.now())
            return not self.stopping.is_set() and device_id not in self.lost

        return keep

    def _collect(self) -> None:
        for future in [f for f in self.busy if f.done()]:
            self._finish(self.busy.pop(future), future.result())

    def _finish(self, device_id: int, step: Step) -> None:
        if device_id in self.lost:
            self.lost.discard(device_id)
            return  # lost while its step ran: another loop may serve it now
        if step.exit is None:
            self.slots[device_id] = (step.at, step.device)
            return
        self.exits[device_id] = step.exit
        if step.exit == SenderExit.DAILY_LIMIT:
            self.parked[device_id] = step.at
        self._release([device_id])

    def _wait(self, now) -> None:
        free = self._pool is None or len(self.busy) < self.threads
        looks = [at for at, _ in self.slots.values()] if free else []
        until = min([*looks, *self._upkeep_moments()])
        seconds = max(0.0, (until - now).total_seconds())
        if self._pool is None:
            clock.sleep(seconds)
        elif seconds and not any(f.done() for f in self.busy):
            self._wake.wait(seconds)
        self._wake.clear()

    def _upkeep_moments(self) -> list:
        renew = self.renewed_at + _lease() / 3
        if self.only:  # a loop for given devices looks for them only when it holds none
            return [renew]
        return [renew, self.polled_at + timedelta(seconds=settings.SENDER_LOOP_POLL_SECONDS)]

    def _poll_due(self, now) -> bool:
        if self._woken:
            self._woken = False
            return True
        if self.only:
            return not self.slots and not self.busy
        return now >= self.polled_at + timedelta(seconds=settings.SENDER_LOOP_POLL_SECONDS)

    # --- Leases --------------------------------------------------------------------------------

    def _upkeep(self, now) -> None:
        try:
            self._renew_if_due(now)
            if self._poll_due(now):
                self.polled_at = now
                self._take_fair_share(now)
        except Exception:  # the database went away, say: the next round tries again
            if self._pool is None:
                raise
            logger.exception("sender loop: lease upkeep failed; trying again")
            _drop_broken_connection()

    def _announce(self, now) -> None:
        self.renewed_at = self.polled_at = now - timedelta(days=1)
        Presence.objects.update_or_create(
            owner=self.owner,
            defaults={"host": socket.gethostname()[:255], "pid": os.getpid(), "started_at": now}
            | {"seen_at": now},
        )

    def _renew_if_due(self, now) -> None:
        with self._lock:
            if now < self.renewed_at + _lease() / 3:
                return
            self.renewed_at = now
        kept = set(_rows(_RENEW_SQL, owner=self.owner, now=now, until=now + _lease()))
        for device_id in self.held() - kept:  # we stalled past a lease: someone else may serve it
            logger.warning("sender loop: lease of device %s lost", device_id)
            if self.slots.pop(device_id, None) is None:
                self.lost.add(device_id)  # its step is running: it claims nothing more
            self.exits[device_id] = SenderExit.LEASE_LOST
        Presence.objects.filter(owner=self.owner).update(seen_at=now, devices=len(kept))
        Presence.objects.filter(seen_at__lt=now - 3 * _lease()).delete()  # dead loops' rows

    def _take_fair_share(self, now) -> None:
        """Take free devices with work, up to this loop's share; hand over what is beyond it."""
        params = {"now": now, "parked": self._parked_ids(now), "only": self.only}
        mine = len(self.held())
        if self.only:
            limit = len(self.only) - mine
        else:
            loops = Presence.objects.filter(seen_at__gte=now - _lease()).count() or 1
            leased = Device.objects.filter(lease_expires_at__gte=now).exclude(lease_owner="").count()
            share = math.ceil((leased + _rows(_COUNT_FREE_SQL, **params)[0]) / loops)
            if mine > share + 1:
                self._hand_over(mine - share)
            limit = share - mine
        if limit > 0:
            params.update(owner=self.owner, until=now + _lease(), limit=limit)
            for device_id in _rows(_ACQUIRE_SQL, **params):
                self.slots[device_id] = (now, None)
                self.exits.pop(device_id, None)
                self.lost.discard(device_id)

    def _parked_ids(self, now) -> list[int]:
        """Devices let go at their daily limit, until their next day (and window) opens; one
        given new work meanwhile (a reply's Message 2, which the reserve or its after-hours
        allowance may let go at once) is looked at again."""
        with self._lock:
            woken, self._woken_devices = self._woken_devices, set()
        self.parked = {d: at for d, at in self.parked.items() if at > now and str(d) not in woken}
        return list(self.parked)

    def _hand_over(self, count: int) -> None:
        """Release the `count` devices whose next look is furthest (not those sending now)."""
        furthest = sorted(self.slots, key=lambda d: self.slots[d][0], reverse=True)[:count]
        for device_id in furthest:
            self.slots.pop(device_id)
        self._release(furthest)

    def _release(self, device_ids) -> None:
        _rows(_RELEASE_SQL, owner=self.owner, ids=list(device_ids), returning=False)

    def _listen(self) -> None:
        """Wake the loop when a launch, a resume or a reply gives a device work (NOTIFY from
        messaging.dispatch.senders_wake): Message 2 need not wait for the next poll."""
        import psycopg

        from config.embedded_pg import url_for
        from messaging.dispatch import WAKE_CHANNEL

        url = url_for(connection.settings_dict).replace("postgres://", "postgresql://", 1)
        try:
            with psycopg.connect(url, autocommit=True) as listener:
                listener.execute(f"LISTEN {WAKE_CHANNEL}")
                while not self.stopping.is_set():
                    for notify in listener.notifies(timeout=0.25, stop_after=1):
                        with self._lock:
                            self._woken_devices.add(notify.payload)
                        self._woken = True
                        self._wake.set()
        except Exception:  # the loop still polls: a wake-up is a shortcut, never a need
            logger.warning("sender loop: no wake-ups (polling only)", exc_info=True)

    # --- Stopping --------------------------------------------------------------------------------

    def _shutdown(self) -> None:
        """Let the steps in flight record their sends (they claim nothing more), then release
        every lease: the devices are free for another loop at once."""
        self.stopping.set()
        if self._pool is not None:
            wait(list(self.busy))
            self._collect()
            self._pool.shutdown(wait=True)
        for device_id in self.slots:
            self.exits.setdefault(device_id, SenderExit.STOPPED)
        self.slots.clear()
        try:
            _rows(_RELEASE_SQL, owner=self.owner, ids=None, returning=False)
            Presence.objects.filter(owner=self.owner).delete()
        except Exception:  # the database is gone: the leases lapse by themselves
            logger.exception("sender loop: could not release its leases")
        for thread_connection in self._thread_connections:
            thread_connection.close()
        if self._listener is not None:
            self._listener.join(timeout=2)

    def _remember_connection(self) -> None:
        """Each pool thread's own connection, closed by the loop when it stops."""
        from django.db import connections

        own = connections["default"]
        if own not in self._thread_connections:
            own.inc_thread_sharing()
            self._thread_connections.add(own)


def _rows(sql: str, *, returning: bool = True, **params) -> list:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()] if returning else []


def _drop_broken_connection() -> None:
    """After an error, a connection PostgreSQL dropped is closed (the next query reconnects);
    never inside a transaction (a test's), which closing would end."""
    if not connection.in_atomic_block:
        connection.close_if_unusable_or_obsolete()
