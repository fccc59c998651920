"""The campaign's single device goes: `Campaign.devices` (0010) holds it, and messages' key
refers to those links now (messaging/migrations/0009)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0014_campaign_devices"),
        ("messaging", "0011_message_key_on_campaign_devices"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="campaign", name="campaign_id_device_unique"),
        migrations.RemoveField(model_name="campaign", name="device"),
    ]
