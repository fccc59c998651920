"""REST API for categories, contacts and campaigns (`/api/`): the viewsets; their bodies are in
`campaigns/serializers.py`, the API's shared policy (permissions, paging, parsing) in `config/api.py`.

Views only call the behaviour functions (`campaign_launch`, `contact_opt_out`, …): the API
does what the admin does. A refusal of those functions is answered with its own HTTP status
and body (`CampaignRefused.as_dict()`), never with a 500.
"""

from __future__ import annotations

from collections import defaultdict

from django.db import IntegrityError, transaction
from django.db.models import Count
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ParseError
from rest_framework.response import Response

from campaigns.cloning import campaign_clone
from campaigns.contacts import ContactRow, contact_opt_out, contacts_upsert
from campaigns.figures import funnel_by_variant
from campaigns.launch import campaign_hand_over, campaign_launch, launch_preview
from campaigns.lifecycle import campaign_cancel, campaign_pause, campaign_resume, campaign_retry_failed
from campaigns.models import Campaign, CampaignStatus, Category, Contact
from campaigns.refusals import CampaignRefused
from campaigns.serializers import (
    CampaignSerializer,
    CampaignStatsSerializer,
    CancelResultSerializer,
    CategorySerializer,
    ContactBulkItemSerializer,
    ContactSerializer,
    HandOverRequestSerializer,
    HandOverResultSerializer,
    LaunchRequestSerializer,
    LaunchResultSerializer,
    QuotaRefusalSerializer,
    RefusalSerializer,
    RetryResultSerializer,
    TestSendRequestSerializer,
    TestSendResultSerializer,
    device_shares,
)
from campaigns.test_send import campaign_test_send
from config.api import ApiViewSetMixin
from messaging.models import Device, MessageKind, MessageStatus
from webhooks.api import ConversationTurnSerializer, conversation_data


def refusal_response(refusal: CampaignRefused) -> Response:
    return Response(refusal.as_dict(), status=refusal.http_status)


# --- Categories ---------------------------------------------------------------------------------


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


class ContactFilter(filters.FilterSet):
    phone = filters.CharFilter(lookup_expr="icontains")
    name = filters.CharFilter(lookup_expr="icontains")
    category = filters.ModelChoiceFilter(field_name="categories", queryset=Category.objects.all())
    opted_out = filters.BooleanFilter(field_name="opted_out_at", lookup_expr="isnull", exclude=True)

    class Meta:
        model = Contact
        fields = ["phone", "name", "category", "opted_out", "whatsapp_status"]


_BULK_MAX = 1000


def schema_bulk_limits(result, generator, request, public):
    """Schema hook: the bulk body's 1 to _BULK_MAX items, which the view counts itself
    (drf-spectacular does not carry a list serializer's lengths into the schema)."""
    body = result["paths"].get("/api/contacts/bulk/", {}).get("post", {}).get("requestBody", {})
    for media in body.get("content", {}).values():
        media["schema"].update(minItems=1, maxItems=_BULK_MAX)
    return result


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

    @extend_schema(
        summary="The contact's whole conversation, in order",
        responses={200: ConversationTurnSerializer(many=True)},
        filters=False,
    )
    @action(detail=True, methods=["get"], filterset_class=None, pagination_class=None)
    def conversation(self, request, pk=None):
        """Every Message 1 and 2 created for the contact and every message they wrote, oldest first."""
        return Response(conversation_data(self.get_object()))


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


class CampaignFilter(filters.FilterSet):
    name = filters.CharFilter(lookup_expr="icontains")
    category = filters.ModelChoiceFilter(field_name="categories", queryset=Category.objects.all())
    device = filters.ModelChoiceFilter(field_name="devices", queryset=Device.objects.all())

    class Meta:
        model = Campaign
        fields = ["name", "status", "device", "category"]


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
        if name == "devices":
            return [device.pk for device in value] != campaign.device_ids()
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
    queryset = Campaign.objects.prefetch_related("categories", "devices").order_by("-created_at", "-id")

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
            "devices": device_shares(result.pace),
        }
        return Response(LaunchResultSerializer(body).data)

    @extend_schema(request=None, responses={201: CampaignSerializer})
    @action(detail=True, methods=["post"])
    def clone(self, request, pk=None):
        """A new draft with this campaign's content, categories, devices, variants and media."""
        clone = campaign_clone(campaign=self.get_object(), by=request.user)
        return Response(CampaignSerializer(clone).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=TestSendRequestSerializer,
        responses={202: TestSendResultSerializer, 400: _REFUSED},
    )
    @action(detail=True, methods=["post"], url_path="test-send")
    def test_send(self, request, pk=None):
        """Queue Message 1, as `contact` would read it, to `phone` on the campaign's device: it
        leaves at the device's next slot (`leaves_at`), paced and counted like any send."""
        campaign = self.get_object()
        body = TestSendRequestSerializer(data=request.data)
        if not body.is_valid():  # the refusal's shape, as every 400 of this API
            refusal = {"code": "invalid", "detail": "The test send is invalid.", "errors": body.errors}
            return Response(refusal, status=status.HTTP_400_BAD_REQUEST)
        try:
            result = campaign_test_send(campaign=campaign, by=request.user, **body.validated_data)
        except CampaignRefused as refusal:
            return refusal_response(refusal)
        return Response(TestSendResultSerializer(result).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        request=HandOverRequestSerializer,
        responses={200: HandOverResultSerializer, 400: _REFUSED},
    )
    @action(detail=True, methods=["post"], url_path="hand-over")
    def hand_over(self, request, pk=None):
        """Move unsent Message 1s between the campaign's devices (by default off its halted
        ones), balanced as at launch. A message being sent, or already sent, never moves."""
        campaign = self.get_object()
        try:
            options = HandOverRequestSerializer(data=request.data)
            options.is_valid(raise_exception=True)
        except (ParseError, serializers.ValidationError) as error:
            body = {"code": "invalid", "detail": "The hand-over options are invalid.", "errors": error.detail}
            return Response(body, status=status.HTTP_400_BAD_REQUEST)
        try:
            moved = campaign_hand_over(campaign=campaign, **options.validated_data)
        except CampaignRefused as refusal:
            return refusal_response(refusal)
        return Response(HandOverResultSerializer({"moved": {str(k): v for k, v in moved.items()}}).data)

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

    @extend_schema(request=None, responses={200: RetryResultSerializer, 409: _REFUSED})
    @action(detail=True, methods=["post"], url_path="retry-failed")
    def retry_failed(self, request, pk=None):
        """Send the failed Message 1s again: those Wassenger never accepted, whose contact is on
        WhatsApp and not opted out, go back to pending with fresh attempts (a completed
        campaign sends again). Each call is recorded (who, when, how many)."""
        try:
            retried = campaign_retry_failed(campaign=self.get_object(), by=request.user)
        except CampaignRefused as refusal:
            return refusal_response(refusal)
        campaign = self.get_object()
        return Response({"campaign": CampaignSerializer(campaign).data, "messages_retried": retried})

    @extend_schema(responses={200: CampaignStatsSerializer})
    @action(detail=True, methods=["get"])
    def stats(self, request, pk=None):
        """Messages by kind and status, and what a launch would do now (the launch preview)."""
        campaign = self.get_object()
        kinds = (MessageKind.MESSAGE_1, MessageKind.MESSAGE_2)  # test sends are never the campaign's
        by_kind = {kind: dict.fromkeys(MessageStatus.values, 0) for kind in kinds}
        messages = campaign.messages.filter(kind__in=kinds)
        rows = messages.values_list("kind", "status").annotate(n=Count("id")).order_by()
        for kind, state, count in rows:
            by_kind[kind][state] = count
        total = sum(sum(states.values()) for states in by_kind.values())
        body = {"messages": total, "by_kind": by_kind, "preview": _preview_numbers(campaign)}
        body["by_variant"] = funnel_by_variant(campaign)
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
        "recently_messaged": preview.recently_messaged,
        "in_other_campaigns": preview.in_other_campaigns,
        "remaining_today": preview.pace.remaining_today,
        "devices": [
            {**share, "estimated_finish": share["estimated_finish"] and share["estimated_finish"].isoformat()}
            for share in device_shares(preview.pace)
        ],
        "days_needed": preview.pace.days_needed,
        "estimated_finish": finish.isoformat() if finish else None,
        "missing_variables": preview.missing_without_fallback,
        "unknown_variables": preview.unknown_variables,
        "variants": [
            {"variant": v.number, "text": v.text, "recipients": v.recipients} for v in preview.variants
        ],
    }
