"""REST API for inbound messages (`GET /api/replies/`, read-only): what contacts wrote and what
Relance did with it; the same filters as the replies page (webhooks/inbound.py)."""

from __future__ import annotations

from django_filters import rest_framework as filters
from rest_framework import serializers, viewsets

from campaigns.models import Campaign
from config.api import ApiViewSetMixin
from messaging.api import MessageSerializer
from messaging.models import Device
from webhooks.inbound import contact_conversation, inbound_search
from webhooks.models import InboundMessage, InboundOutcome


class InboundMessageSerializer(serializers.ModelSerializer):
    class Meta:
        model = InboundMessage
        fields = [
            "id",
            "contact",
            "phone",
            "device",
            "written_at",
            "text",
            "media_kind",
            "whatsapp_id",
            "campaign",
            "message_1",
            "outcome",
        ]
        read_only_fields = fields


class ReplyFilter(filters.FilterSet):
    campaign = filters.ModelChoiceFilter(queryset=Campaign.objects.all())
    device = filters.ModelChoiceFilter(queryset=Device.objects.all())
    outcome = filters.ChoiceFilter(choices=InboundOutcome.choices)
    q = filters.CharFilter(field_name="text", lookup_expr="icontains", label="Text contains")

    class Meta:
        model = InboundMessage
        fields = ["campaign", "device", "outcome", "contact"]


class ReplyViewSet(ApiViewSetMixin, viewsets.ReadOnlyModelViewSet):
    """Inbound messages, newest first: filter by campaign, device, outcome, contact, text (`q`)."""

    serializer_class = InboundMessageSerializer
    filterset_class = ReplyFilter
    ordering_fields = ["written_at", "id"]
    queryset = inbound_search()


class ConversationTurnSerializer(serializers.Serializer):
    """One message of a contact's conversation: ours (`out`, a Message 1 or 2) or theirs (`in`)."""

    at = serializers.DateTimeField()
    direction = serializers.ChoiceField(choices=["out", "in"])
    message = MessageSerializer(allow_null=True)
    inbound = InboundMessageSerializer(allow_null=True)


def conversation_data(contact) -> list[dict]:
    turns = [
        {"at": t.at, "direction": "out" if t.ours else "in", "message": t.message, "inbound": t.inbound}
        for t in contact_conversation(contact)
    ]
    return ConversationTurnSerializer(turns, many=True).data
