"""A row for each inbound message already processed before rows existed (read from its stored
event and what processing wrote in its reason: webhooks/inbound.py). Safe to run twice."""

from django.db import migrations

from webhooks.inbound import inbound_backfill


class Migration(migrations.Migration):
    dependencies = [
        ("webhooks", "0004_inbound_messages"),
        ("campaigns", "0009_contact_fields_are_texts"),
        ("messaging", "0008_device_wassenger_health"),
    ]

    operations = [migrations.RunPython(inbound_backfill, migrations.RunPython.noop, elidable=True)]
