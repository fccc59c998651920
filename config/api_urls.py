"""The REST API under `/api/`: one router for the apps' viewsets, the schema and its docs."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from campaigns.api import CampaignViewSet, CategoryViewSet, ContactViewSet
from messaging.api import DeviceViewSet, MessageViewSet
from monitoring.api import DailyStatsView
from webhooks.api import ReplyViewSet

router = DefaultRouter()
router.register("devices", DeviceViewSet, basename="device")
router.register("categories", CategoryViewSet, basename="category")
router.register("contacts", ContactViewSet, basename="contact")
router.register("campaigns", CampaignViewSet, basename="campaign")
router.register("messages", MessageViewSet, basename="message")
router.register("replies", ReplyViewSet, basename="reply")

urlpatterns = [
    path("stats/daily/", DailyStatsView.as_view(), name="stats-daily"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    *router.urls,
]
