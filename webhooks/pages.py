"""The operator's replies page (`/replies/`): the latest inbound messages across campaigns,
newest first, filtered by campaign, device, outcome and text (webhooks/inbound.py's
`inbound_search`, which the API uses too); its table refreshes itself like the dashboard."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.urls import path
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from campaigns.models import Campaign
from campaigns.views import id_or_none
from config.paging import EstimatedCountPaginator
from messaging.models import Device
from webhooks.inbound import inbound_search
from webhooks.models import InboundOutcome


def _replies_context(request) -> dict:
    filters = {
        "campaign": Campaign.objects.filter(pk=id_or_none(request.GET.get("campaign", ""))).first(),
        "device": Device.objects.filter(pk=id_or_none(request.GET.get("device", ""))).first(),
        "outcome": request.GET.get("outcome", ""),
        "text": request.GET.get("q", "").strip(),
    }
    rows = inbound_search(**filters)
    page = EstimatedCountPaginator(rows, settings.OPERATOR_PAGE_SIZE).get_page(request.GET.get("page"))
    return {"page": page, "filters": filters, "query": request.GET.urlencode()}


@never_cache
@login_required
@require_GET
def reply_list(request):
    context = {
        **_replies_context(request),
        "section": "replies",
        "campaigns": Campaign.objects.order_by("-created_at", "-pk").only("pk", "name"),
        "devices": Device.objects.order_by("label"),
        "outcomes": InboundOutcome.choices,
        "refresh_seconds": settings.OPERATOR_REFRESH_SECONDS,
    }
    return render(request, "operator/reply_list.html", context)


@never_cache
@login_required
@require_GET
def reply_list_live(request):
    """The replies table alone, fetched again every few seconds by the page."""
    return render(request, "operator/_replies_live.html", _replies_context(request))


urlpatterns = [
    path("replies/", reply_list, name="reply-list"),
    path("replies/live/", reply_list_live, name="reply-list-live"),
]
