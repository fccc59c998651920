"""One composite foreign key, (campaign, device) → the campaign's (id, device), in place of
one on campaign and one on device.

A launch inserts tens of thousands of messages and PostgreSQL checks every foreign key of
every row at commit: one check fewer per message is about a sixth of a launch
(bench/launch.py). Nothing is lost: the campaign must exist, and the device is the
campaign's (itself checked by the campaign's key), which the single keys did not ensure.
Django 5.2 cannot declare a composite foreign key, so it lives here; the model's two
ForeignKeys keep db_constraint=False. Deferred to commit, as Django's own keys are.
"""

from django.db import migrations, models

ADD_KEY = """
ALTER TABLE messaging_message ADD CONSTRAINT message_campaign_device_fk
  FOREIGN KEY (campaign_id, device_id) REFERENCES campaigns_campaign (id, device_id)
  DEFERRABLE INITIALLY DEFERRED
"""
DROP_KEY = "ALTER TABLE messaging_message DROP CONSTRAINT message_campaign_device_fk"


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0006_campaign_id_device_unique"),
        ("messaging", "0005_contact_led_unique_message"),
    ]

    operations = [
        # Added before the single keys go, so that no moment is left without a check.
        migrations.RunSQL(ADD_KEY, reverse_sql=DROP_KEY),
        migrations.AlterField(
            model_name="message",
            name="campaign",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=models.CASCADE,
                related_name="messages",
                to="campaigns.campaign",
            ),
        ),
        migrations.AlterField(
            model_name="message",
            name="device",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=models.PROTECT,
                related_name="messages",
                to="messaging.device",
            ),
        ),
    ]
