"""A campaign sends from several devices: `Campaign.devices`, filled from `Campaign.device`.

Every existing campaign keeps its one device as its only one. Messages' composite key moves
to the link table next (messaging/migrations/0009), then the old column goes (0011).
"""

from django.db import migrations, models

COPY = """
INSERT INTO campaigns_campaign_devices (campaign_id, device_id)
SELECT id, device_id FROM campaigns_campaign ORDER BY id
"""


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0013_failed_retry"),
        ("messaging", "0010_message_variant"),
    ]

    operations = [
        migrations.AddField(
            model_name="campaign",
            name="devices",
            field=models.ManyToManyField(
                help_text="The numbers it sends from; recipients are shared between them at launch.",
                related_name="campaigns",
                to="messaging.device",
                verbose_name="devices",
            ),
        ),
        migrations.RunSQL(COPY, reverse_sql=migrations.RunSQL.noop),
    ]
