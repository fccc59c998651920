"""Migrating to several devices per campaign keeps every campaign's device and its messages."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("campaigns", "0013_failed_retry"), ("messaging", "0010_message_variant")]
AFTER = [("campaigns", "0015_remove_campaign_device"), ("messaging", "0011_message_key_on_campaign_devices")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def test_a_campaign_keeps_its_one_device_and_its_messages_their_key():
    old = migrate(BEFORE)
    try:
        device = old.get_model("messaging", "Device").objects.create(label="Old number")
        campaign = old.get_model("campaigns", "Campaign").objects.create(
            name="Old", device=device, message_1_text="Bonjour", message_2_text="Merci"
        )
        contact = old.get_model("campaigns", "Contact").objects.create(phone="+33612345678")
        old.get_model("messaging", "Message").objects.create(
            campaign=campaign, contact=contact, device=device, kind="message_1"
        )
        new = migrate(AFTER)
        migrated = new.get_model("campaigns", "Campaign").objects.get(pk=campaign.pk)
        assert list(migrated.devices.values_list("pk", flat=True)) == [device.pk]
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the key holds for the old message
    finally:  # back to the latest state, whatever migrations came after these
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
