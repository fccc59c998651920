from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from monitoring.health import health_report


@never_cache
@require_GET
def health(request):
    """Public on purpose (for an external monitor): figures and states, no personal data."""
    report = health_report()
    return JsonResponse(report, status=200 if report["healthy"] else 503)
