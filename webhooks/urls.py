from django.urls import re_path

from webhooks import views

app_name = "webhooks"

urlpatterns = [
    # With or without the trailing slash: a POST cannot be redirected to add it.
    re_path(r"^wassenger/?$", views.wassenger, name="wassenger"),
]
