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
