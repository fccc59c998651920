"""REST API for the daily figures per device and their alert level."""

from __future__ import annotations

from datetime import date

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from config import clock
from config.api import StaffWritesOthersRead
from monitoring.figures import LEVEL_ORDER, AlertLevel, daily_figures


class DailyQuerySerializer(serializers.Serializer):
    # Bounded so that the day's UTC interval (day + 1) always exists.
    day = serializers.DateField(required=False, help_text="UTC day, YYYY-MM-DD; today when absent.")

    def validate_day(self, value: date) -> date:
        if not date(2000, 1, 1) <= value <= date(9000, 12, 31):
            raise serializers.ValidationError("Pick a day between 2000-01-01 and 9000-12-31.")
        return value


class DeviceFiguresSerializer(serializers.Serializer):
    device_id = serializers.IntegerField()
    device = serializers.CharField()
    day = serializers.DateField()
    sends = serializers.IntegerField()
    limit = serializers.IntegerField()
    level = serializers.ChoiceField(choices=[level.value for level in AlertLevel])
    waits_for_midnight = serializers.BooleanField()
    message_1_sent = serializers.IntegerField()
    message_2_sent = serializers.IntegerField()
    failed = serializers.IntegerField()
    delivered = serializers.IntegerField()
    read = serializers.IntegerField()
    replies = serializers.IntegerField()
    opt_outs = serializers.IntegerField()
    # Absent from the days stored before test sends were counted.
    test_sent = serializers.IntegerField(required=False, help_text="Test sends (in `sends`, in no campaign).")
    opt_out_confirmed = serializers.IntegerField(
        required=False, help_text="Opt-out confirmations sent (in `sends`, paced as Message 2)."
    )


class DailyStatsSerializer(serializers.Serializer):
    day = serializers.DateField()
    level = serializers.ChoiceField(
        choices=[level.value for level in AlertLevel], help_text="The worst level of any device."
    )
    devices = DeviceFiguresSerializer(many=True)


class DailyStatsView(APIView):
    permission_classes = [StaffWritesOthersRead]

    @extend_schema(
        parameters=[
            OpenApiParameter("day", OpenApiTypes.DATE, description="UTC day, YYYY-MM-DD; today when absent.")
        ],
        responses={200: DailyStatsSerializer},
    )
    def get(self, request):
        """Sends, limit and alert level of each device on one UTC day."""
        query = DailyQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        day = query.validated_data.get("day") or clock.now().date()
        devices = [figures.as_dict() for figures in daily_figures(day)]
        levels = [LEVEL_ORDER.index(AlertLevel(row["level"])) for row in devices]
        level = LEVEL_ORDER[max(levels, default=0)]
        body = {"day": day, "level": level.value, "devices": devices}
        return Response(DailyStatsSerializer(body).data)
