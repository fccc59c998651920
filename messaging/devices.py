"""Devices: the Wassenger numbers Relance sends from, and the one home of halt and resume.

A device is halted by the sender (a bad token, a banned number) and by its Wassenger session
going offline (webhook processing); it is resumed by the operator (admin, API) and by its
session coming back online. Each of them calls `device_halt` / `device_resume`, which write
the halt as one conditional UPDATE, so that two of them racing change it once.
"""

from datetime import datetime

from django.conf import settings
from django.db import transaction

from config import clock
from messaging.models import Device


@transaction.atomic
def device_ensure_default() -> Device:
    """The default device, created on first run from the settings (idempotent).

    A default device without a Wassenger id (made while trying Relance on the sandbox)
    takes WASSENGER_DEVICE_ID once it is set: switching to the real Wassenger is then a
    matter of settings. An id already stored, say one an operator typed in the admin, is
    never replaced, nor is the id taken from a device that already has it.
    """
    default = Device.objects.filter(is_default=True).first()
    if default is None:
        default, _ = Device.objects.get_or_create(
            label="Default", defaults={"wassenger_id": settings.WASSENGER_DEVICE_ID}
        )
        default.is_default = True
        default.save(update_fields=["is_default"])
    configured = settings.WASSENGER_DEVICE_ID
    if (
        not default.wassenger_id
        and configured
        and not Device.objects.filter(wassenger_id=configured).exists()
    ):
        default.wassenger_id = configured
        default.save(update_fields=["wassenger_id"])
    return default


def device_halt(*, device_id: int, reason: str, now: datetime | None = None) -> bool:
    """Stop the device sending until it is resumed; False if it was already halted (the
    first reason is kept: it is the one the operator must act on)."""
    halted = Device.objects.filter(pk=device_id, halted_at__isnull=True).update(
        halted_at=now or clock.now(), halted_reason=reason
    )
    return bool(halted)


def device_resume(*, device: Device, halted_for: str = "") -> bool:
    """Clear a halt (after the operator fixed the token or reconnected the number) and start
    a sender; with `halted_for`, only a halt whose reason starts with it is cleared."""
    # Imported here: dispatch imports the send engine, which halts devices through this module.
    from messaging.dispatch import sender_enqueue

    halted = Device.objects.filter(pk=device.pk, halted_at__isnull=False)
    halted = halted.filter(halted_reason__startswith=halted_for)
    resumed = halted.update(halted_at=None, halted_reason="")
    if resumed:
        sender_enqueue(device.pk)
    return bool(resumed)
