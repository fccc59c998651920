from django.urls import path

from monitoring import views

urlpatterns = [
    path("health/", views.health, name="health"),
    path("", views.dashboard, name="dashboard"),
    path("live/", views.dashboard_live, name="dashboard-live"),
    path("devices/<int:pk>/log/", views.device_log, name="device-log"),
]
