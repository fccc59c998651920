"""REST API for devices (read; staff tune their pacing) and messages (read-only)."""

from __future__ import annotations

from django_filters import rest_framework as filters
from rest_framework import mixins, serializers, viewsets

from campaigns.models import Campaign, Contact
from campaigns.serializers import PhoneField
from config.api import ApiViewSetMixin
from messaging.models import Device, Message, MessageKind, MessageStatus

# Bounds that keep pacing arithmetic (finish estimates, sleeps) within datetime's range.
_DAY_SECONDS = 86_400


class DeviceSerializer(serializers.ModelSerializer):
    phone = PhoneField(read_only=True, allow_blank=True)  # E.164 or empty, in the schema too
    daily_limit = serializers.IntegerField(min_value=0, max_value=1_000_000)
    gap_seconds = serializers.FloatField(min_value=0, max_value=_DAY_SECONDS)
    batch_size = serializers.IntegerField(min_value=1, max_value=1_000_000)
    batch_pause_seconds = serializers.FloatField(min_value=0, max_value=_DAY_SECONDS)

    class Meta:
        model = Device
        fields = [
            "id",
            "label",
            "wassenger_id",
            "phone",
            "is_default",
            "daily_limit",
            "gap_seconds",
            "batch_size",
            "batch_pause_seconds",
            "time_zone",
            "send_window",
            "number_since",
            "last_sent_at",
            "paused_until",
            "halted_at",
            "halted_reason",
            "created_at",
        ]
        # Staff tune pacing here; identity and halting stay in the admin.
        read_only_fields = ["label", "wassenger_id", "phone", "is_default", "halted_at", "halted_reason"]


class DeviceViewSet(
    ApiViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Sending devices. Staff may change their pacing (daily limit, gap, batch size, pause, time
    zone, send window, the number's first day for its warm-up)."""

    serializer_class = DeviceSerializer
    queryset = Device.objects.order_by("label")
    filterset_fields = ["is_default"]
    ordering_fields = ["label", "created_at"]


class MessageSerializer(serializers.ModelSerializer):
    class Meta:
        model = Message
        fields = [
            "id",
            "campaign",
            "contact",
            "device",
            "kind",
            "phone",  # a test send's number (empty: the contact's)
            "status",
            "content",
            "variant",
            "reference",
            "attempts",
            "next_attempt_at",
            "sent_at",
            "delivered_at",
            "read_at",
            "failed_at",
            "replied_at",
            "window_expired_at",
            "last_error",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class MessageFilter(filters.FilterSet):
    campaign = filters.ModelChoiceFilter(queryset=Campaign.objects.all())
    contact = filters.ModelChoiceFilter(queryset=Contact.objects.all())
    status = filters.ChoiceFilter(choices=MessageStatus.choices)
    kind = filters.ChoiceFilter(choices=MessageKind.choices)

    class Meta:
        model = Message
        fields = ["campaign", "contact", "device", "status", "kind", "variant"]


class MessageViewSet(ApiViewSetMixin, viewsets.ReadOnlyModelViewSet):
    """Messages of every campaign, newest first. Filter by campaign, contact, status, kind."""

    serializer_class = MessageSerializer
    filterset_class = MessageFilter
    ordering_fields = ["created_at", "sent_at", "status", "id"]
    # Newest first by id (creation order): the primary key's index, not a sort of every message.
    queryset = Message.objects.order_by("-id")
