from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

admin.site.site_header = "Relance"
admin.site.site_title = "Relance"
admin.site.site_url = "/"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("webhooks/", include("webhooks.urls")),
    path("api/", include("config.api_urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path(
        "login/",
        auth_views.LoginView.as_view(template_name="operator/login.html", redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("campaigns.urls")),
    path("", include("webhooks.pages")),
    path("", include("monitoring.urls")),
]
