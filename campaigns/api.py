"""REST API for categories, contacts and campaigns (`/api/`), and the API's shared policy.

Views only call the behaviour functions (`campaign_launch`, `contact_opt_out`, …): the API
does what the admin does. A refusal of those functions is answered with its own HTTP status
and body (`CampaignRefused.as_dict()`), never with a 500.
"""

from __future__ import annotations

from collections import defaultdict

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ParseError
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from campaigns.contacts import ContactRow, contact_opt_out, contacts_upsert
from campaigns.launch import campaign_launch, launch_preview
from campaigns.lifecycle import campaign_cancel, campaign_pause, campaign_resume
from campaigns.models import Campaign, CampaignStatus, Category, Contact
from campaigns.phones import phone_normalize
from campaigns.refusals import CampaignRefused
from messaging.models import MessageKind, MessageStatus

# --- Shared policy (messaging/api.py and monitoring/api.py use it too) --------------------------


class StaffWritesOthersRead(permissions.BasePermission):
    """Any authenticated user reads; staff write (POST, PUT, PATCH, DELETE, actions) what
    their Django permissions allow them to in the admin, and nothing more.

    Creating needs the model's `add` permission (a bulk import `add` and `change`),
    deleting its `delete`, and every other write, launch, pause, resume, cancel and
    opt-out included, its `change`: the rule of the admin and the operator pages
    (superusers hold every permission).
    """

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if request.method in permissions.SAFE_METHODS:
            return True
        if not user.is_staff:
            return False
        model = _model_of(view)
        return model is None or user.has_perms(_permissions(model, request.method, view))


def _model_of(view):
    queryset = getattr(view, "queryset", None)
    if queryset is None and hasattr(view, "get_queryset"):
        queryset = view.get_queryset()
    return None if queryset is None else queryset.model


def _permissions(model, method: str, view) -> list[str]:
    action = getattr(view, "action", None)
    verbs = {"create": ["add"], "bulk": ["add", "change"]}.get(action)  # bulk creates and updates
    verbs = verbs or (["delete"] if method == "DELETE" else ["change"])
    return [f"{model._meta.app_label}.{verb}_{model._meta.model_name}" for verb in verbs]


class ApiPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class SafeJSONParser(JSONParser):
    """DRF's JSON parser, but a body nested too deep for Python's decoder is a 400, not a 500."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply.") from None


class ApiViewSetMixin:
    permission_classes = [StaffWritesOthersRead]
    pagination_class = ApiPagination
    parser_classes = [SafeJSONParser, FormParser, MultiPartParser]


class RefusalSerializer(serializers.Serializer):
    """The body of every refusal: a code for programs, a message for people, and facts."""

    code = serializers.CharField()
    detail = serializers.CharField()


class QuotaRefusalSerializer(RefusalSerializer):
    remaining_today = serializers.IntegerField()
    days_needed = serializers.IntegerField(allow_null=True)
    estimated_finish = serializers.DateTimeField(allow_null=True)
    recipients = serializers.IntegerField()


def refusal_response(refusal: CampaignRefused) -> Response:
    return Response(refusal.as_dict(), status=refusal.http_status)


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


class CategoryFilter(filters.FilterSet):
    name = filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = Category
        fields = ["name"]


class CategoryViewSet(ApiViewSetMixin, viewsets.ModelViewSet):
    """Categories of contacts. Deleting one removes the memberships, never the contacts."""

    serializer_class = CategorySerializer
    filterset_class = CategoryFilter
    ordering_fields = ["name", "created_at"]

    def get_queryset(self):
        return Category.objects.annotate(contact_count=Count("contacts")).order_by("name")


# --- Contacts -----------------------------------------------------------------------------------


class ContactSerializer(serializers.ModelSerializer):
    phone = serializers.CharField(
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


class ContactFilter(filters.FilterSet):
    phone = filters.CharFilter(lookup_expr="icontains")
    name = filters.CharFilter(lookup_expr="icontains")
    category = filters.ModelChoiceFilter(field_name="categories", queryset=Category.objects.all())
    opted_out = filters.BooleanFilter(field_name="opted_out_at", lookup_expr="isnull", exclude=True)

    class Meta:
        model = Contact
        fields = ["phone", "name", "category", "opted_out", "whatsapp_status"]


_BULK_MAX = 1000

_BulkResult = inline_serializer(
    "ContactBulkResult",
    {
        "created": serializers.IntegerField(),
        "updated": serializers.IntegerField(),
        "contacts": ContactSerializer(many=True),
    },
)
_BulkErrors = inline_serializer(
    "ContactBulkErrors",
    {
        "code": serializers.CharField(),
        "detail": serializers.CharField(),
        "errors": inline_serializer(
            "ContactBulkItemError",
            {"index": serializers.IntegerField(), "errors": serializers.DictField()},
            many=True,
        ),
    },
)


class ContactViewSet(
    ApiViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Contacts. Not deletable here: their messages are history; opt them out instead."""

    serializer_class = ContactSerializer
    filterset_class = ContactFilter
    ordering_fields = ["name", "first_name", "phone", "created_at", "updated_at"]
    queryset = Contact.objects.prefetch_related("categories").order_by("name", "first_name", "phone")

    @extend_schema(
        summary="Create or update many contacts, all or nothing",
        description=(
            f"At most {_BULK_MAX} items. A phone that is already a contact updates it, as the CSV "
            "import does: a non-empty name, first name or field replaces the stored one, an empty "
            "one never erases it, and fields not given are kept; categories given are added to "
            "the contact's. If any item is invalid nothing is written and the "
            "400 lists each invalid item's errors by its index."
        ),
        request=ContactBulkItemSerializer(many=True),
        responses={200: _BulkResult, 400: _BulkErrors},
    )
    @action(detail=False, methods=["post"])
    def bulk(self, request):
        try:
            items = request.data
        except ParseError as error:
            return _bulk_refused(str(error.detail), [])
        if not isinstance(items, list) or not 1 <= len(items) <= _BULK_MAX:
            return _bulk_refused(f"Send a JSON list of 1 to {_BULK_MAX} contacts.", [])
        validated, errors = _bulk_validated(items)
        if errors:
            return _bulk_refused(
                f"{len(errors)} of {len(items)} contacts are invalid: nothing was saved.", errors
            )
        try:
            contacts, created = _bulk_save(validated)
        except IntegrityError:
            # Another request created one of these phones between our check and our write.
            return _bulk_refused("The contacts changed meanwhile: nothing was saved, try again.", [])
        body = {"created": created, "updated": len(contacts) - created}
        body["contacts"] = ContactSerializer(contacts, many=True).data
        return Response(body)

    @extend_schema(request=None, responses={200: ContactSerializer})
    @action(detail=True, methods=["post"], url_path="opt-out")
    def opt_out(self, request, pk=None):
        """Opt the contact out and cancel its pending messages in every campaign."""
        contact = self.get_object()
        with transaction.atomic():
            contact_opt_out(contact=contact)
        contact.refresh_from_db()
        return Response(ContactSerializer(contact).data)


def _bulk_refused(detail: str, errors: list) -> Response:
    body = {"code": "invalid_items", "detail": detail, "errors": errors}
    return Response(body, status=status.HTTP_400_BAD_REQUEST)


def _bulk_validated(items: list) -> tuple[list[dict], list[dict]]:
    validated, errors, seen = [], [], {}
    for index, item in enumerate(items):
        serializer = ContactBulkItemSerializer(data=item)
        if not serializer.is_valid():
            errors.append({"index": index, "errors": serializer.errors})
            continue
        phone = serializer.validated_data["phone"]
        if phone in seen:
            message = f"{phone} is also item {seen[phone]}."
            errors.append({"index": index, "errors": {"phone": [message]}})
        seen.setdefault(phone, index)
        validated.append(serializer.validated_data)
    return validated, errors


@transaction.atomic
def _bulk_save(validated: list[dict]) -> tuple[list[Contact], int]:
    """The import's upsert (campaigns/contacts.py), once per distinct set of categories."""
    groups = defaultdict(list)
    for data in validated:
        values = {key: data[key] for key in ("name", "first_name", "fields") if key in data}
        row = ContactRow(data["phone"], **values)
        groups[tuple(sorted({category.pk for category in data.get("categories", [])}))].append(row)
    written = {}
    for category_ids, rows in groups.items():
        upserted = contacts_upsert(rows=rows, category_ids=category_ids)
        written.update({phone: (pk, created) for pk, phone, created in upserted})
    contacts = Contact.objects.prefetch_related("categories").in_bulk([pk for pk, _ in written.values()])
    ordered = [contacts[written[data["phone"]][0]] for data in validated]
    return ordered, sum(created for _, created in written.values())


# --- Campaigns ----------------------------------------------------------------------------------


class CampaignSerializer(serializers.ModelSerializer):
    message_1_template_variables = serializers.JSONField(
        required=False, help_text="Values of the template's parameters: a list, or an object by name."
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
            "device",
            "categories",
            "message_1_text",
            "message_1_template_name",
            "message_1_template_language",
            "message_1_template_variables",
            "message_2_text",
            "variable_fallbacks",
            "starts_at",
            "status",
            "created_by",
            "launched_at",
            "launched_by",
            "finished_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["status", "created_by", "launched_at", "launched_by", "finished_at"]

    def validate_message_1_template_variables(self, value):
        if not isinstance(value, list | dict):
            raise serializers.ValidationError("Expected a list or an object.")
        return json_checked(value)

    def validate_variable_fallbacks(self, value: dict) -> dict:
        return json_checked(value)

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


_MESSAGE_1_FIELDS = ("message_1_text", "message_1_template_name", "message_1_template_language")


class CampaignFilter(filters.FilterSet):
    name = filters.CharFilter(lookup_expr="icontains")
    category = filters.ModelChoiceFilter(field_name="categories", queryset=Category.objects.all())

    class Meta:
        model = Campaign
        fields = ["name", "status", "device", "category"]


class LaunchRequestSerializer(serializers.Serializer):
    allow_multi_day = serializers.BooleanField(
        default=False, help_text="Accept spreading the campaign over several UTC days."
    )


class LaunchResultSerializer(serializers.Serializer):
    campaign = CampaignSerializer()
    messages_created = serializers.IntegerField()
    scheduled = serializers.BooleanField()
    days_needed = serializers.IntegerField(allow_null=True)
    estimated_finish = serializers.DateTimeField(allow_null=True)


class CancelResultSerializer(serializers.Serializer):
    campaign = CampaignSerializer()
    messages_cancelled = serializers.IntegerField()


class CampaignStatsSerializer(serializers.Serializer):
    messages = serializers.IntegerField(help_text="All messages of the campaign.")
    by_kind = serializers.DictField(
        child=serializers.DictField(child=serializers.IntegerField()),
        help_text="{kind: {status: count}}, every kind and status present, zeros included.",
    )
    preview = serializers.DictField(help_text="The launch preview's numbers, as they are now.")


_NOT_DRAFT = OpenApiResponse(RefusalSerializer, description="The campaign is not a draft (code not_draft).")
_FROZEN = OpenApiResponse(
    RefusalSerializer,
    description="Launched, and a field frozen at launch would change (code frozen_after_launch).",
)


def _conflict(code: str, detail: str) -> Response:
    return Response({"code": code, "detail": detail}, status=status.HTTP_409_CONFLICT)


def _changed_fields(campaign: Campaign, data: dict) -> list[str]:
    """The fields of `data` whose value differs from the campaign's."""

    def differs(name: str, value) -> bool:
        if name == "categories":
            return set(value) != set(campaign.categories.all())
        return value != getattr(campaign, name)

    return [name for name, value in data.items() if differs(name, value)]


_REFUSED = OpenApiResponse(RefusalSerializer, description="The action is refused (code and human message).")


class CampaignViewSet(ApiViewSetMixin, viewsets.ModelViewSet):
    """Campaigns: launched, paused, resumed, cancelled. After launch only the name, Message 2 and
    the fallbacks may still change, and only a draft may be deleted (`Campaign.edit_refusal`,
    `Campaign.delete_refusal`: the admin's rule too)."""

    serializer_class = CampaignSerializer
    filterset_class = CampaignFilter
    ordering_fields = ["name", "created_at", "launched_at", "status"]
    queryset = Campaign.objects.prefetch_related("categories").order_by("-created_at", "-id")

    def perform_create(self, serializer):
        serializer.save(created_by=self.request.user)

    @extend_schema(responses={200: CampaignSerializer, 409: _FROZEN})
    def update(self, request, *args, **kwargs):
        # partial_update calls this too. The rule is the campaign's own, as in the admin.
        campaign = self.get_object()
        serializer = self.get_serializer(campaign, data=request.data, partial=kwargs.get("partial", False))
        if serializer.is_valid():  # an invalid body gets DRF's own 400 below
            detail = campaign.edit_refusal(_changed_fields(campaign, serializer.validated_data))
            if detail:
                return _conflict("frozen_after_launch", detail)
        return super().update(request, *args, **kwargs)

    @extend_schema(responses={200: CampaignSerializer, 409: _FROZEN})
    def partial_update(self, request, *args, **kwargs):
        return super().partial_update(request, *args, **kwargs)

    @extend_schema(responses={204: None, 409: _NOT_DRAFT})
    def destroy(self, request, *args, **kwargs):
        detail = self.get_object().delete_refusal()
        if detail:
            return _conflict("not_draft", detail)
        return super().destroy(request, *args, **kwargs)

    @extend_schema(
        request=LaunchRequestSerializer,
        responses={
            200: LaunchResultSerializer,
            400: _REFUSED,
            409: _REFUSED,
            429: OpenApiResponse(QuotaRefusalSerializer, description="Over today's quota (quota_exceeded)."),
        },
    )
    @action(detail=True, methods=["post"])
    def launch(self, request, pk=None):
        """Launch the draft: one Message 1 per eligible contact, then sending (or scheduled)."""
        campaign = self.get_object()
        try:
            options = LaunchRequestSerializer(data=request.data)
            options.is_valid(raise_exception=True)
        except (ParseError, serializers.ValidationError) as error:
            body = {"code": "invalid", "detail": "The launch options are invalid.", "errors": error.detail}
            return Response(body, status=status.HTTP_400_BAD_REQUEST)
        try:
            result = campaign_launch(campaign=campaign, by=request.user, **options.validated_data)
        except CampaignRefused as refusal:
            return refusal_response(refusal)
        body = {
            "campaign": result.campaign,
            "messages_created": result.messages_created,
            "scheduled": result.campaign.status == CampaignStatus.SCHEDULED,
            "days_needed": result.pace.days_needed,
            "estimated_finish": result.pace.estimated_finish,
        }
        return Response(LaunchResultSerializer(body).data)

    @extend_schema(request=None, responses={200: CampaignSerializer, 409: _REFUSED})
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        """Stop sending; a send already in flight completes."""
        return self._move(campaign_pause, request)

    @extend_schema(request=None, responses={200: CampaignSerializer, 409: _REFUSED})
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        """Carry on sending where the pause left off."""
        return self._move(campaign_resume, request)

    def _move(self, function, request) -> Response:
        try:
            campaign = function(campaign=self.get_object(), by=request.user)
        except CampaignRefused as refusal:
            return refusal_response(refusal)
        return Response(CampaignSerializer(campaign).data)

    @extend_schema(request=None, responses={200: CancelResultSerializer, 409: _REFUSED})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel the campaign and its pending messages; sent ones keep their state."""
        campaign = self.get_object()
        try:
            cancelled = campaign_cancel(campaign=campaign, by=request.user)
        except CampaignRefused as refusal:
            return refusal_response(refusal)
        campaign.refresh_from_db()
        return Response({"campaign": CampaignSerializer(campaign).data, "messages_cancelled": cancelled})

    @extend_schema(responses={200: CampaignStatsSerializer})
    @action(detail=True, methods=["get"])
    def stats(self, request, pk=None):
        """Messages by kind and status, and what a launch would do now (the launch preview)."""
        campaign = self.get_object()
        by_kind = {kind: dict.fromkeys(MessageStatus.values, 0) for kind in MessageKind.values}
        rows = campaign.messages.values_list("kind", "status").annotate(n=Count("id")).order_by()
        for kind, state, count in rows:
            by_kind[kind][state] = count
        total = sum(sum(states.values()) for states in by_kind.values())
        body = {"messages": total, "by_kind": by_kind, "preview": _preview_numbers(campaign)}
        return Response(CampaignStatsSerializer(body).data)


def _preview_numbers(campaign: Campaign) -> dict:
    preview = launch_preview(campaign=campaign, sample=False)
    finish = preview.pace.estimated_finish
    return {
        "recipients": preview.recipients,
        "distinct_contacts": preview.distinct_contacts,
        "duplicates": preview.duplicates,
        "opted_out": preview.opted_out,
        "invalid": preview.invalid,
        "remaining_today": preview.pace.remaining_today,
        "days_needed": preview.pace.days_needed,
        "estimated_finish": finish.isoformat() if finish else None,
        "missing_variables": preview.missing_without_fallback,
        "unknown_variables": preview.unknown_variables,
    }
