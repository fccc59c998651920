"""Messages' composite key, (campaign, device), now refers to the campaign's device links
(`Campaign.devices`) instead of the campaign's one device: a message still goes through one
of its campaign's devices, checked by the database at commit (see 0006 for why one
composite key rather than two single ones).
"""

from django.db import migrations

NEW_KEY = """
ALTER TABLE messaging_message DROP CONSTRAINT message_campaign_device_fk;
ALTER TABLE messaging_message ADD CONSTRAINT message_campaign_device_fk
  FOREIGN KEY (campaign_id, device_id) REFERENCES campaigns_campaign_devices (campaign_id, device_id)
  DEFERRABLE INITIALLY DEFERRED
"""
OLD_KEY = """
ALTER TABLE messaging_message DROP CONSTRAINT message_campaign_device_fk;
ALTER TABLE messaging_message ADD CONSTRAINT message_campaign_device_fk
  FOREIGN KEY (campaign_id, device_id) REFERENCES campaigns_campaign (id, device_id)
  DEFERRABLE INITIALLY DEFERRED
"""


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0014_campaign_devices"),
        ("messaging", "0010_message_variant"),
    ]

    operations = [migrations.RunSQL(NEW_KEY, reverse_sql=OLD_KEY)]
