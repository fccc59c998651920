from collections.abc import Callable
from dataclasses import dataclass

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from campaigns.launch import (
    CampaignRefused,
    QuotaExceeded,
    campaign_cancel,
    campaign_launch,
    campaign_pause,
    campaign_resume,
    format_time,
    launch_preview,
)
from campaigns.models import Campaign, CampaignStatus, Category, Contact
from messaging.models import Message, MessageStatus


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["name", "contact_count", "created_at"]
    search_fields = ["name", "description"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(contact_count=Count("contacts"))

    @admin.display(ordering="contact_count", description="contacts")
    def contact_count(self, category):
        return category.contact_count


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    list_display = ["phone", "first_name", "name", "whatsapp_status", "opted_out_at", "created_at"]
    list_filter = ["whatsapp_status", ("opted_out_at", admin.EmptyFieldListFilter), "categories"]
    search_fields = ["phone", "name", "first_name"]
    filter_horizontal = ["categories"]
    readonly_fields = ["whatsapp_checked_at", "created_at", "updated_at"]


@dataclass(frozen=True)
class StatusMove:
    """A pause, resume or cancel button: its behaviour function and what the operator reads."""

    function: Callable
    title: str
    explanation: str
    done: str  # the success message, formatted with the campaign's name


STATUS_MOVES = {
    "pause": StatusMove(
        campaign_pause,
        gettext_lazy("Pause"),
        gettext_lazy(
            "No new message of this campaign is sent until you resume it; a message being sent completes."
        ),
        gettext_lazy("Campaign “%(name)s” paused."),
    ),
    "resume": StatusMove(
        campaign_resume,
        gettext_lazy("Resume"),
        gettext_lazy("Sending carries on with the messages not sent yet; none is sent twice."),
        gettext_lazy("Campaign “%(name)s” resumed."),
    ),
    "cancel": StatusMove(
        campaign_cancel,
        gettext_lazy("Cancel"),
        gettext_lazy(
            "Messages not sent yet, and follow-ups, are cancelled for good. Sent messages keep their state."
        ),
        gettext_lazy("Campaign “%(name)s” cancelled."),
    ),
}


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ["name", "status", "device", "starts_at", "launched_at", "finished_at", "created_at"]
    list_filter = ["status", "device", "categories"]
    search_fields = ["name", "message_1_text", "message_2_text"]
    list_select_related = ["device"]
    filter_horizontal = ["categories"]
    readonly_fields = [
        "status",
        "created_by",
        "launched_at",
        "launched_by",
        "finished_at",
        "created_at",
        "updated_at",
    ]
    actions = ["launch_selected"]

    # Launched messages were built from these: changing them afterwards would change nothing
    # already queued (or, for the start time, disagree with it), so they freeze at launch.
    frozen_after_launch = [
        "device",
        "categories",
        "message_1_text",
        "message_1_template_name",
        "message_1_template_language",
        "message_1_template_variables",
        "starts_at",
    ]

    def get_readonly_fields(self, request, obj=None):
        if obj is None or obj.status == CampaignStatus.DRAFT:
            return self.readonly_fields
        return [*self.frozen_after_launch, *self.readonly_fields]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def get_urls(self):
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        view = self.admin_site.admin_view
        moves = [
            path(f"<path:object_id>/{move}/", view(self.status_view), {"move": move}, name=f"{name}_{move}")
            for move in STATUS_MOVES
        ]
        launch = path("<path:object_id>/launch/", view(self.launch_view), name=f"{name}_launch")
        return [launch, *moves, *super().get_urls()]

    @admin.action(description=gettext_lazy("Launch the selected campaign…"))
    def launch_selected(self, request, queryset):
        chosen = list(queryset.values_list("pk", flat=True)[:2])
        if len(chosen) != 1:
            self.message_user(request, _("Choose exactly one campaign to launch."), messages.WARNING)
            return None
        return redirect(self._url("launch", chosen[0]))

    def launch_view(self, request, object_id):
        """GET: what the launch would do; POST: launch. A refusal is a message, never a 500."""
        campaign = self._campaign(request, object_id)
        if not isinstance(campaign, Campaign):
            return campaign
        if request.method == "POST":
            return self._launch(request, campaign)
        preview = launch_preview(campaign=campaign)
        quota = next((r for r in preview.refusals() if isinstance(r, QuotaExceeded)), None)
        context = {
            **self._context(request, campaign, _("Launch “%(name)s”") % {"name": campaign.name}),
            "preview": preview,
            "blocking": preview.refusals(allow_multi_day=True),
            "quota": quota,
            "pace": preview.pace,
            "start": format_time(preview.pace.start),
            "finish": format_time(preview.pace.estimated_finish) if preview.pace.estimated_finish else "",
        }
        return TemplateResponse(request, "admin/campaigns/campaign/launch_confirmation.html", context)

    def _launch(self, request, campaign):
        multi_day = request.POST.get("allow_multi_day") == "1"
        try:
            result = campaign_launch(campaign=campaign, by=request.user, allow_multi_day=multi_day)
        except CampaignRefused as refusal:
            self.message_user(request, refusal.message, messages.ERROR)
            return redirect(self._url("launch", campaign.pk))
        self.message_user(request, _launched_message(result), messages.SUCCESS)
        return redirect(self._url("change", campaign.pk))

    def status_view(self, request, object_id, move):
        """GET: confirm pause, resume or cancel; POST: do it."""
        campaign = self._campaign(request, object_id)
        if not isinstance(campaign, Campaign):
            return campaign
        if request.method != "POST":
            return self._status_confirmation(request, campaign, move)
        try:
            outcome = STATUS_MOVES[move].function(campaign=campaign, by=request.user)
        except CampaignRefused as refusal:
            self.message_user(request, refusal.message, messages.ERROR)
            return redirect(self._url("change", campaign.pk))
        done = STATUS_MOVES[move].done % {"name": campaign.name}
        if move == "cancel":
            done += " " + ngettext(
                "%(count)d pending message cancelled.", "%(count)d pending messages cancelled.", outcome
            ) % {"count": outcome}
        self.message_user(request, done, messages.SUCCESS)
        return redirect(self._url("change", campaign.pk))

    def _status_confirmation(self, request, campaign, move):
        title = _("%(action)s “%(name)s”") % {"action": STATUS_MOVES[move].title, "name": campaign.name}
        pending = Message.objects.filter(campaign=campaign, status=MessageStatus.PENDING)
        context = {
            **self._context(request, campaign, title),
            "move": STATUS_MOVES[move],
            "pending": pending.count() if move == "cancel" else None,
            "allowed": _move_allowed(campaign, move),
        }
        return TemplateResponse(request, "admin/campaigns/campaign/status_confirmation.html", context)

    def _campaign(self, request, object_id):
        """The campaign, or the admin's usual redirect when it does not exist."""
        campaign = self.get_object(request, unquote(object_id))
        if campaign is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_change_permission(request, campaign):
            raise PermissionDenied
        return campaign

    def _context(self, request, campaign, title: str) -> dict:
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": campaign,
            "title": title,
        }

    def _url(self, view: str, pk) -> str:
        return reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_{view}", args=[pk])


def _move_allowed(campaign: Campaign, move: str) -> bool:
    return {
        "pause": campaign.status == CampaignStatus.SENDING,
        "resume": campaign.status == CampaignStatus.PAUSED,
        "cancel": not campaign.is_final,
    }[move]


def _launched_message(result) -> str:
    facts = {
        "name": result.campaign.name,
        "count": result.messages_created,
        "start": format_time(result.pace.start),
        "finish": format_time(result.pace.estimated_finish),
    }
    if result.campaign.status == CampaignStatus.SCHEDULED:
        return (
            _(
                "Campaign “%(name)s” scheduled for %(start)s: %(count)d Message 1 queued, "
                "estimated finish %(finish)s."
            )
            % facts
        )
    return _("Campaign “%(name)s” launched: %(count)d Message 1 queued, estimated finish %(finish)s.") % facts
