from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

admin.site.site_header = "Relance"
admin.site.site_title = "Relance"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("webhooks/", include("webhooks.urls")),
    path("api/", include("config.api_urls")),
    path("", include("monitoring.urls")),
    # The operator pages come later; until then the admin is the front door.
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
]
