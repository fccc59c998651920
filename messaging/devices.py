"""Devices: the Wassenger numbers Relance sends from."""

from django.conf import settings
from django.db import transaction

from messaging.models import Device


@transaction.atomic
def device_ensure_default() -> Device:
    """The default device, created on first run from the settings (idempotent)."""
    default = Device.objects.filter(is_default=True).first()
    if default is not None:
        return default
    device, _ = Device.objects.get_or_create(
        label="Default", defaults={"wassenger_id": settings.WASSENGER_DEVICE_ID}
    )
    device.is_default = True
    device.save(update_fields=["is_default"])
    return device


def device_resume(*, device: Device) -> bool:
    """Clear a halt (after the operator fixed the token or reconnected the number)."""
    from messaging.dispatch import sender_enqueue

    resumed = Device.objects.filter(pk=device.pk, halted_at__isnull=False).update(
        halted_at=None, halted_reason=""
    )
    if resumed:
        sender_enqueue(device.pk)
    return bool(resumed)
