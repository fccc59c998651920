"""The operator's campaign and contact pages (HTML; the admin stays the place to edit data).

A campaign's page shows its funnel, failures by reason and a paginated per-recipient
timeline, exports that timeline as CSV, and offers the launch / pause / resume / cancel
buttons, which call the very functions the admin's buttons call (campaigns/launch_page.py).
"""

from __future__ import annotations

import csv
import re
from datetime import datetime

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, Q, Subquery
from django.http import FileResponse, Http404, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from campaigns.cloning import campaign_clone, cloned_message
from campaigns.figures import (
    campaign_counts,
    campaign_progress,
    contact_totals,
    failures_by_reason,
    funnel_by_variant,
)
from campaigns.launch import campaign_launch, launched_message
from campaigns.launch_page import STATUS_MOVES, launch_page_context, move_pending, move_run
from campaigns.lifecycle import failed_retriable_count
from campaigns.media import attachment_open, campaign_attachments
from campaigns.models import Campaign, CampaignStatus, Category, Contact
from campaigns.refusals import CampaignRefused
from campaigns.test_send import TestSendForm, test_send_form_run
from config import clock
from config.paging import EstimatedCountPaginator
from messaging.models import Message, MessageKind, MessageStatus
from webhooks.inbound import contact_conversation
from webhooks.models import InboundMessage

# --- Lists ------------------------------------------------------------------------------------


def _page(request, queryset):
    return EstimatedCountPaginator(queryset, settings.OPERATOR_PAGE_SIZE).get_page(request.GET.get("page"))


@login_required
@require_GET
def campaign_list(request):
    campaigns = Campaign.objects.prefetch_related("devices").order_by("-created_at", "-pk")
    status = request.GET.get("status", "")
    if status in CampaignStatus.values:
        campaigns = campaigns.filter(status=status)
    page = _page(request, campaigns)
    counts = campaign_counts(campaign.pk for campaign in page)
    context = {
        "section": "campaigns",
        "page": page,
        "rows": [(campaign, counts[campaign.pk]) for campaign in page],
        "statuses": CampaignStatus.choices,
        "status": status,
        "any_campaign": status or page.paginator.count or Campaign.objects.exists(),
    }
    return render(request, "operator/campaign_list.html", context)


@login_required
@require_GET
def contact_list(request):
    contacts = Contact.objects.prefetch_related("categories").order_by("name", "first_name", "phone")
    query = request.GET.get("q", "").strip()
    if query:
        contacts = contacts.filter(
            Q(phone__icontains=query) | Q(name__icontains=query) | Q(first_name__icontains=query)
        )
    category = id_or_none(request.GET.get("category", ""))
    if category is not None:
        contacts = contacts.filter(categories=category)
    totals = contact_totals()
    categories = list(Category.objects.order_by("name"))
    for item in categories:
        item.contact_count = totals["by_category"].get(item.pk, 0)
    context = {
        "section": "contacts",
        "page": _page(request, contacts),
        "query": query,
        "category": category,
        "categories": categories,
        "totals": {key: totals[key] for key in ("total", "opted_out", "invalid")},
        "totals_as_of": totals["as_of"],
    }
    return render(request, "operator/contact_list.html", context)


@never_cache
@login_required
@require_GET
def contact_detail(request, pk: int):
    """One contact: who they are, and their whole conversation with every campaign."""
    contact = get_object_or_404(Contact.objects.prefetch_related("categories"), pk=pk)
    context = {"section": "contacts", "contact": contact, "conversation": contact_conversation(contact)}
    return render(request, "operator/contact_detail.html", context)


def id_or_none(text: str) -> int | None:
    # Not str.isdigit(): "²" is a digit to it, and int() refuses it.
    return int(text) if text.isascii() and text.isdigit() else None


# --- One campaign -----------------------------------------------------------------------------


def _campaign(pk: int) -> Campaign:
    return get_object_or_404(
        Campaign.objects.select_related("launched_by").prefetch_related("devices"), pk=pk
    )


def _live_context(campaign: Campaign) -> dict:
    """The figures that move while the campaign sends: counts, funnel, estimated finish."""
    return {
        "campaign": campaign,
        "counts": campaign_counts([campaign.pk])[campaign.pk],
        "progress": campaign_progress(campaign, now=clock.now()),
        "failures": failures_by_reason(campaign),
    }


# The timeline's filter beyond Message 1's statuses: recipients who wrote back.
REPLIED = "replied"


def timeline(campaign: Campaign, *, status: str = ""):
    """One row per recipient: their Message 1 (with the contact) and their Message 2, if any."""
    message_2 = Message.objects.filter(
        campaign_id=OuterRef("campaign_id"), contact_id=OuterRef("contact_id"), kind=MessageKind.MESSAGE_2
    )
    rows = Message.objects.filter(campaign=campaign, kind=MessageKind.MESSAGE_1)
    if status in MessageStatus.values:
        rows = rows.filter(status=status)
    rows = _with_reply(rows, replied_only=status == REPLIED)
    # Contacts fetched by id for each page (or CSV chunk) rather than joined: the join made
    # PostgreSQL merge along the whole contact table to find a page's fifty.
    return (
        rows.prefetch_related("contact")
        .annotate(
            message_2_status=Subquery(message_2.values("status")[:1]),
            message_2_sent_at=Subquery(message_2.values("sent_at")[:1]),
        )
        .order_by("contact_id")
    )


# --- Replies in the timeline (webhooks' inbound messages) ---


def _with_reply(rows, *, replied_only: bool):
    """Each Message 1's first reply (text, when written), late ones included."""
    replies = InboundMessage.objects.filter(message_1_id=OuterRef("pk")).order_by("written_at", "pk")
    if replied_only:
        rows = rows.filter(Exists(replies))
    return rows.annotate(
        reply_text=Subquery(replies.values("text")[:1]),
        reply_written_at=Subquery(replies.values("written_at")[:1]),
        reply_outcome=Subquery(replies.values("outcome")[:1]),
    )


# ---


@never_cache
@login_required
@require_GET
def campaign_detail(request, pk: int):
    campaign = _campaign(pk)
    status = request.GET.get("status", "")
    rows = _page(request, timeline(campaign, status=status))
    for message in rows:
        message.message_2_label = (
            MessageStatus(message.message_2_status).label if message.message_2_status else ""
        )
    context = {
        **_live_context(campaign),
        "section": "campaigns",
        "timeline": rows,
        "by_variant": funnel_by_variant(campaign),
        "attachments": campaign_attachments(campaign),
        "timeline_status": status if status in (*MessageStatus.values, REPLIED) else "",
        "message_statuses": MessageStatus.choices,
        "can_act": _can_act(request.user),
        "retriable": failed_retriable_count(campaign),
        "refresh_seconds": settings.OPERATOR_REFRESH_SECONDS,
        "live": not campaign.is_final and campaign.status != CampaignStatus.DRAFT,
    }
    return render(request, "operator/campaign_detail.html", context)


@never_cache
@login_required
@require_GET
def campaign_live(request, pk: int):
    """The campaign page's live fragment alone (progress, funnel, failures)."""
    return render(request, "operator/_campaign_live.html", _live_context(_campaign(pk)))


@login_required
@require_GET
def campaign_media(request, pk: int, message: str):
    """A campaign's attachment, for the pages that show it (the storage may be private)."""
    campaign = _campaign(pk)
    if message not in ("message_1", "message_2") or not getattr(campaign, f"{message}_media"):
        raise Http404
    content, mime = attachment_open(campaign, message)
    return FileResponse(content, content_type=mime)


# --- CSV export ---------------------------------------------------------------------------------

CSV_COLUMNS = {
    "phone": "contact__phone",
    "first_name": "contact__first_name",
    "name": "contact__name",
    "message_1_status": "status",
    "message_1_variant": "variant",
    "attempts": "attempts",
    "sent_at": "sent_at",
    "delivered_at": "delivered_at",
    "read_at": "read_at",
    "replied_at": "replied_at",
    "reply_window_expired_at": "window_expired_at",
    "failed_at": "failed_at",
    "last_error": "last_error",
    "message_2_status": "message_2_status",
    "message_2_sent_at": "message_2_sent_at",
    # The reply (first inbound message answering Message 1, late ones included).
    "reply_written_at": "reply_written_at",
    "reply_text": "reply_text",
}
# A spreadsheet runs a cell that starts like this as a formula (CSV injection); a plain
# number such as an E.164 phone (+33612345678) is harmless and is left as it is.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?\Z")


def csv_cell(value) -> str:
    """`value` as CSV text that no spreadsheet will run: a would-be formula gets a leading '."""
    if value is None:
        return ""
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    if text.startswith(_FORMULA_START) and not _PLAIN_NUMBER.match(text):
        return "'" + text
    return text


class _Line:
    """A file-like object whose write returns the line, for csv.writer in a streamed response."""

    def write(self, line: str) -> str:
        return line


def _csv_lines(rows):
    writer = csv.writer(_Line())
    yield "\ufeff"  # so that spreadsheets read the accents of names as UTF-8
    yield writer.writerow(CSV_COLUMNS)
    for row in rows:
        yield writer.writerow([csv_cell(value) for value in row])


@login_required
@require_GET
def campaign_timeline_csv(request, pk: int):
    """Every recipient's timeline, streamed: memory stays flat whatever the audience."""
    campaign = _campaign(pk)
    rows = timeline(campaign, status=request.GET.get("status", "")).values_list(*CSV_COLUMNS.values())
    response = StreamingHttpResponse(_csv_lines(rows.iterator(chunk_size=2000)), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="campaign-{campaign.pk}-timeline.csv"'
    return response


# --- Launch, pause, resume, cancel --------------------------------------------------------------


def _can_act(user) -> bool:
    """Who may press the buttons: staff allowed to change campaigns, as in the admin."""
    return user.is_staff and user.has_perm("campaigns.change_campaign")


def _acting(request, pk: int) -> Campaign:
    if not _can_act(request.user):
        raise PermissionDenied
    return _campaign(pk)


@login_required
@require_http_methods(["GET", "POST"])
def campaign_launch_view(request, pk: int):
    """GET: what the launch would do (as the admin's confirmation page); POST: launch."""
    campaign = _acting(request, pk)
    if request.method == "POST":
        multi_day = request.POST.get("allow_multi_day") == "1"
        try:
            result = campaign_launch(campaign=campaign, by=request.user, allow_multi_day=multi_day)
        except CampaignRefused as refusal:
            messages.error(request, refusal.message)
            return redirect("campaign-launch", pk=campaign.pk)
        messages.success(request, launched_message(result))
        return redirect("campaign-detail", pk=campaign.pk)
    context = {"section": "campaigns", "original": campaign, **launch_page_context(campaign=campaign)}
    context["attachments"] = campaign_attachments(campaign)
    return render(request, "operator/campaign_launch.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def campaign_test_send_view(request, pk: int):
    """GET: whose Message 1, to which number; POST: queue it (it leaves paced like any send)."""
    campaign = _acting(request, pk)
    form = TestSendForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        done = test_send_form_run(campaign=campaign, form=form, by=request.user)
        if done:
            messages.success(request, done)
            return redirect("campaign-detail", pk=campaign.pk)
    context = {"section": "campaigns", "campaign": campaign, "form": form}
    return render(request, "operator/campaign_test_send.html", context)


@login_required
@require_POST
def campaign_clone_view(request, pk: int):
    """A new draft with this campaign's content; the operator lands on it."""
    if not request.user.has_perm("campaigns.add_campaign"):
        raise PermissionDenied
    campaign = _acting(request, pk)
    clone = campaign_clone(campaign=campaign, by=request.user)
    messages.success(request, cloned_message(campaign, clone))
    return redirect("campaign-detail", pk=clone.pk)


@login_required
@require_http_methods(["GET", "POST"])
def campaign_move(request, pk: int, move: str):
    """GET: confirm pause, resume or cancel; POST: do it (pause and resume post directly)."""
    if move not in STATUS_MOVES:
        raise Http404
    campaign, action = _acting(request, pk), STATUS_MOVES[move]
    if request.method == "GET":
        context = {"section": "campaigns", "campaign": campaign, "move": move, "action": action}
        context["pending"] = move_pending(campaign=campaign, move=move)
        return render(request, "operator/campaign_move.html", context)
    try:
        done = move_run(campaign=campaign, move=move, by=request.user)
    except CampaignRefused as refusal:
        messages.error(request, refusal.message)
        return redirect("campaign-detail", pk=campaign.pk)
    messages.success(request, done)
    return redirect("campaign-detail", pk=campaign.pk)
