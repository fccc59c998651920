"""The operator dashboard, a device's log and `/health/`: GET only, and they only read.

Their figures come from monitoring/dashboard.py and monitoring/health.py (a campaign's own
figures from campaigns/figures.py); incidents and emails are the checks' business
(monitoring/checks.py), never a page view's.
"""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from config import clock
from messaging.models import Device
from monitoring.dashboard import dashboard as dashboard_figures
from monitoring.dashboard import setup_steps
from monitoring.device_log import device_log_page
from monitoring.health import health_report


@never_cache
@require_GET
def health(request):
    """Public on purpose (for an external monitor): figures and states, no personal data."""
    report = health_report()
    return JsonResponse(report, status=200 if report["healthy"] else 503)


@never_cache
@login_required
@require_GET
def dashboard(request):
    """Today per device, the last 24 hours, the workers and the campaigns in progress; the
    live part refreshes itself from `dashboard_live`."""
    steps = setup_steps()
    context = {
        "board": dashboard_figures(now=clock.now()),
        "steps": steps,
        "first_steps": not all(step.done for step in steps),
        "refresh_seconds": settings.OPERATOR_REFRESH_SECONDS,
    }
    return render(request, "operator/dashboard.html", context)


@never_cache
@login_required
@require_GET
def dashboard_live(request):
    """The dashboard's live fragment alone, fetched again every few seconds by the page."""
    return render(request, "operator/_dashboard_live.html", {"board": dashboard_figures(now=clock.now())})


@never_cache
@login_required
@require_GET
def device_log(request, pk: int):
    """The device's recent sends, newest first, test sends marked (monitoring/device_log.py)."""
    device = get_object_or_404(Device, pk=pk)
    page = device_log_page(device, request.GET.get("page"))
    return render(
        request, "operator/device_log.html", {"section": "dashboard", "device": device, "page": page}
    )
