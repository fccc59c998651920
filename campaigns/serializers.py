"""Serializers of the campaigns app's REST API (`campaigns/api.py` holds the viewsets): the
bodies of categories, contacts and campaigns, of the launch and its refusals, and the checks
on what a client may write (phones, JSON values).

A phone is read in any format and answered in E.164: `PhoneField` says so in the schema (a
`maxLength` on the way in, the E.164 `pattern` on the way out), so a client or a contract
fuzzer knows both.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from rest_framework import serializers

from campaigns.media import media_valid
from campaigns.models import Campaign, Category, Contact
from campaigns.phones import E164_REGEX, phone_normalize
from messaging.models import Device

# --- Refusals and checks ------------------------------------------------------------------------


class RefusalSerializer(serializers.Serializer):
    """The body of every refusal: a code for programs, a message for people, and facts."""

    code = serializers.CharField()
    detail = serializers.CharField()


class QuotaRefusalSerializer(RefusalSerializer):
    remaining_today = serializers.IntegerField()
    days_needed = serializers.IntegerField(allow_null=True)
    estimated_finish = serializers.DateTimeField(allow_null=True)
    recipients = serializers.IntegerField()


_MAX_JSON_DEPTH = 5


def json_checked(value, *, depth: int = 0):
    """Refuse what PostgreSQL's jsonb would choke on (NUL, lone surrogates) and deep nesting."""
    if depth > _MAX_JSON_DEPTH:
        raise serializers.ValidationError(f"Nested deeper than {_MAX_JSON_DEPTH} levels.")
    if isinstance(value, str):
        if "\x00" in value or any("\ud800" <= char <= "\udfff" for char in value):
            raise serializers.ValidationError("Text may not contain NUL or surrogate characters.")
    elif isinstance(value, dict):
        for key, item in value.items():
            json_checked(key, depth=depth + 1)
            json_checked(item, depth=depth + 1)
    elif isinstance(value, list):
        for item in value:
            json_checked(item, depth=depth + 1)
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
        raise serializers.ValidationError("Numbers must stay within ±2^53.")
    return value


def phone_checked(value: str) -> str:
    try:
        return phone_normalize(value)
    except DjangoValidationError as error:
        raise serializers.ValidationError(error.messages[0], code="invalid_phone") from None


class PhoneField(serializers.CharField):
    """A phone: any format in (normalised by `phone_checked`), E.164 out."""


class PhoneFieldSchema(OpenApiSerializerFieldExtension):
    target_class = PhoneField

    def map_serializer_field(self, auto_schema, direction):
        field = self.target
        if direction == "request":
            return {"type": "string"} | ({"maxLength": field.max_length} if field.max_length else {})
        # drf-spectacular adds "or empty" itself to a pattern of a field that allows blank.
        return {"type": "string", "pattern": E164_REGEX}


# --- Categories ---------------------------------------------------------------------------------


class CategorySerializer(serializers.ModelSerializer):
    contacts = serializers.SerializerMethodField(help_text="How many contacts are in the category.")

    class Meta:
        model = Category
        fields = ["id", "name", "description", "contacts", "created_at"]

    def get_contacts(self, category: Category) -> int:
        # Lists annotate the count; a row just created or updated is counted on its own.
        count = getattr(category, "contact_count", None)
        return count if count is not None else category.contacts.count()


# --- Contacts -----------------------------------------------------------------------------------


class ContactSerializer(serializers.ModelSerializer):
    phone = PhoneField(
        max_length=64,
        help_text="Any format; stored as E.164. National numbers are read in the default region.",
    )
    fields = serializers.DictField(
        child=serializers.CharField(allow_blank=True),  # a number is kept as its text
        required=False,
        help_text="Free-form fields, used as message variables ({{ city }}); values are texts.",
    )
    categories = serializers.PrimaryKeyRelatedField(
        many=True, required=False, queryset=Category.objects.all()
    )

    class Meta:
        model = Contact
        fields = [
            "id",
            "phone",
            "name",
            "first_name",
            "fields",
            "categories",
            "opted_out_at",
            "whatsapp_status",
            "whatsapp_checked_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["opted_out_at", "whatsapp_status", "whatsapp_checked_at"]
        # Uniqueness is checked on the normalised number below, not on what was typed.
        extra_kwargs = {"phone": {"validators": []}}

    def validate_phone(self, value: str) -> str:
        phone = phone_checked(value)
        others = Contact.objects.filter(phone=phone)
        if self.instance is not None:
            others = others.exclude(pk=self.instance.pk)
        if others.exists():
            raise serializers.ValidationError(f"{phone} is already a contact.", code="unique")
        return phone

    def validate_fields(self, value: dict) -> dict:
        return json_checked(value)


class ContactBulkItemSerializer(ContactSerializer):
    """One row of a bulk upsert: an existing phone is updated, so it is not a duplicate."""

    def validate_phone(self, value: str) -> str:
        return phone_checked(value)


# --- Campaigns ----------------------------------------------------------------------------------


class CampaignSerializer(serializers.ModelSerializer):
    devices = serializers.PrimaryKeyRelatedField(
        many=True,
        allow_empty=False,
        queryset=Device.objects.all(),
        help_text="The devices it sends from, in order; at launch each recipient is given one of them.",
    )
    message_1_template_variables = serializers.JSONField(
        required=False, help_text="Values of the template's parameters: a list, or an object by name."
    )
    # Multipart only; null (a GET's body sent back with no attachment, or to remove one) clears it.
    message_1_media = serializers.FileField(
        required=False, allow_null=True, help_text="Message 1's attachment (multipart); null removes it."
    )
    message_2_media = serializers.FileField(
        required=False, allow_null=True, help_text="Message 2's attachment (multipart); null removes it."
    )
    variable_fallbacks = serializers.DictField(
        child=serializers.CharField(allow_blank=True, max_length=1000),
        required=False,
        help_text='Used when a contact lacks a variable, e.g. {"first_name": "there"}.',
    )

    class Meta:
        model = Campaign
        fields = [
            "id",
            "name",
            "devices",
            "categories",
            "message_1_text",
            "message_1_variants",
            "message_1_media",
            "message_1_template_name",
            "message_1_template_language",
            "message_1_template_variables",
            "message_2_text",
            "message_2_media",
            "opt_out_confirmation",
            "variable_fallbacks",
            "starts_at",
            "fatigue_days",
            "skip_other_campaigns",
            "status",
            "created_by",
            "launched_at",
            "launched_by",
            "finished_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["status", "created_by", "launched_at", "launched_by", "finished_at"]

    def validate_devices(self, value: list) -> list:
        return list(dict.fromkeys(value))  # a device given twice is one device

    def create(self, validated_data: dict) -> Campaign:
        devices = validated_data.pop("devices")
        campaign = super().create(validated_data)
        campaign.devices_set(devices)
        return campaign

    def update(self, instance: Campaign, validated_data: dict) -> Campaign:
        devices = validated_data.pop("devices", None)
        campaign = super().update(instance, validated_data)
        if devices is not None:
            campaign.devices_set(devices)
        return campaign

    def to_representation(self, instance: Campaign) -> dict:
        body = super().to_representation(instance)
        body["devices"] = instance.device_ids()  # in the order they were given, not by id
        return body

    def validate_message_1_template_variables(self, value):
        if not isinstance(value, list | dict):
            raise serializers.ValidationError("Expected a list or an object.")
        return json_checked(value)

    def validate_variable_fallbacks(self, value: dict) -> dict:
        return json_checked(value)

    def validate_message_1_media(self, value):
        return _attachment_checked(value)

    def validate_message_2_media(self, value):
        return _attachment_checked(value)

    def validate(self, attrs: dict) -> dict:
        merged = {field: getattr(self.instance, field, "") for field in _MESSAGE_1_FIELDS} | attrs
        if not merged["message_1_text"] and not merged["message_1_template_name"]:
            raise serializers.ValidationError(
                {"message_1_text": "Message 1 needs a text or a WhatsApp template."}
            )
        if merged["message_1_template_language"] and not merged["message_1_template_name"]:
            raise serializers.ValidationError(
                {"message_1_template_language": "A template language needs a template name."}
            )
        return attrs


def _attachment_checked(value):
    """The model's own check (type by content, size), which a declared field does not run; None is ""."""
    if value is None:
        return ""
    try:
        media_valid(value)
    except DjangoValidationError as error:
        raise serializers.ValidationError(error.messages) from error
    return value


_MESSAGE_1_FIELDS = ("message_1_text", "message_1_template_name", "message_1_template_language")


class TestSendRequestSerializer(serializers.Serializer):
    contact = serializers.PrimaryKeyRelatedField(
        queryset=Contact.objects.all(), help_text="The contact whose Message 1 is sent."
    )
    phone = serializers.CharField(max_length=40, help_text="The number to send it to, any format.")


class TestSendResultSerializer(serializers.Serializer):
    message = serializers.IntegerField(source="message.pk", help_text="The queued test send (kind `test`).")
    phone = serializers.CharField(help_text="E.164.")
    text = serializers.CharField()
    device = serializers.IntegerField(source="device.pk", help_text="The device it leaves from.")
    leaves_at = serializers.DateTimeField(help_text="When the device's pacing lets it leave.")


class LaunchRequestSerializer(serializers.Serializer):
    allow_multi_day = serializers.BooleanField(
        default=False, help_text="Accept spreading the campaign over several UTC days."
    )


class DeviceShareSerializer(serializers.Serializer):
    device = serializers.IntegerField()
    recipients = serializers.IntegerField(help_text="Message 1s given to this device.")
    remaining_today = serializers.IntegerField()
    estimated_finish = serializers.DateTimeField(allow_null=True)
    halted = serializers.BooleanField()
    daily_limit = serializers.IntegerField(help_text="The start day's limit (lower while warming up).")
    warming_up = serializers.BooleanField(help_text="A young number: warm-up lowers the start day's limit.")


class LaunchResultSerializer(serializers.Serializer):
    campaign = CampaignSerializer()
    messages_created = serializers.IntegerField()
    scheduled = serializers.BooleanField()
    days_needed = serializers.IntegerField(allow_null=True)
    estimated_finish = serializers.DateTimeField(allow_null=True)
    devices = DeviceShareSerializer(many=True, help_text="The split of the recipients between the devices.")


def device_shares(pace) -> list[dict]:
    """The launch's split, device by device (a `campaigns.launch.Pace`)."""
    return [
        {
            "device": device.device.pk,
            "recipients": device.recipients,
            "remaining_today": device.remaining_today,
            "estimated_finish": device.estimated_finish,
            "halted": device.halted,
            "daily_limit": device.daily_limit,
            "warming_up": device.warming_up,
        }
        for device in pace.devices
    ]


class HandOverRequestSerializer(serializers.Serializer):
    from_devices = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**31 - 1),
        required=False,
        help_text="Devices whose unsent Message 1s move; by default the campaign's halted devices.",
    )
    to_devices = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**31 - 1),
        required=False,
        help_text="Devices that take them, balanced as at launch; by default its others that can send.",
    )


class HandOverResultSerializer(serializers.Serializer):
    moved = serializers.DictField(
        child=serializers.IntegerField(), help_text="{device id: unsent Message 1s it received}."
    )


class CancelResultSerializer(serializers.Serializer):
    campaign = CampaignSerializer()
    messages_cancelled = serializers.IntegerField()


class VariantFunnelSerializer(serializers.Serializer):
    variant = serializers.IntegerField(source="number")
    text = serializers.CharField()
    recipients = serializers.IntegerField(source="counts.recipients")
    sent = serializers.IntegerField(source="counts.sent")
    delivered = serializers.IntegerField(source="counts.delivered")
    read = serializers.IntegerField(source="counts.read")
    replied = serializers.IntegerField(source="counts.replied")
    message_2_sent = serializers.IntegerField(source="counts.message_2_sent")


class RetryResultSerializer(serializers.Serializer):
    campaign = CampaignSerializer()
    messages_retried = serializers.IntegerField(help_text="Failed Message 1s put back in the queue.")


class CampaignStatsSerializer(serializers.Serializer):
    messages = serializers.IntegerField(
        help_text="The campaign's Message 1s and Message 2s (never its test sends)."
    )
    by_kind = serializers.DictField(
        child=serializers.DictField(child=serializers.IntegerField()),
        help_text="{kind: {status: count}}, every kind and status present, zeros included.",
    )
    preview = serializers.DictField(help_text="The launch preview's numbers, as they are now.")
    by_variant = VariantFunnelSerializer(
        many=True, help_text="Message 1's funnel per variant (empty with a single text): replies per variant."
    )
