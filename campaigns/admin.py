"""The admin of categories, contacts, number checks and campaigns.

Actions and buttons only call behaviour functions and report with `message_user`: opt-out
(campaigns/contacts.py), import (importing.py), number checks (verification.py), launch
(launch.py) and the status moves and launch page shared with the operator pages
(launch_page.py). What may be edited or deleted after launch is asked of the campaign
itself (`Campaign.frozen_fields`, `Campaign.delete_refusal`), as the API does.
"""

import uuid
from pathlib import Path

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.formats import localize
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe
from django.utils.timezone import localtime
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from campaigns.cloning import campaign_clone, cloned_message
from campaigns.contacts import contact_opt_out
from campaigns.importing import ImportFailed, contacts_import, upload_refusal
from campaigns.launch import campaign_hand_over, campaign_launch, launched_message
from campaigns.launch_page import (
    STATUS_MOVES,
    handed_over_message,
    launch_page_context,
    move_allowed,
    move_pending,
    move_run,
)
from campaigns.lifecycle import failed_retriable_count
from campaigns.media import campaign_attachments
from campaigns.models import Campaign, Category, Contact, VerificationJob
from campaigns.refusals import CampaignRefused
from campaigns.test_send import TestSendForm, test_send_form_run
from campaigns.verification import verification_start
from config.admin_base import LargeTableAdmin


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["name", "contact_count", "created_at"]
    search_fields = ["name", "description"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(contact_count=Count("contacts"))

    @admin.display(ordering="contact_count", description="contacts")
    def contact_count(self, category):
        return category.contact_count

    actions = ["verify_numbers"]

    @admin.action(description=gettext_lazy("Check the WhatsApp numbers of the selected categories"))
    def verify_numbers(self, request, queryset):
        for category in queryset:
            _report_job(self, request, verification_start(category=category, by=request.user))


@admin.register(Contact)
class ContactAdmin(LargeTableAdmin):
    list_display = ["phone", "first_name", "name", "whatsapp_status", "opted_out_at", "created_at"]
    list_filter = ["whatsapp_status", ("opted_out_at", admin.EmptyFieldListFilter), "categories"]
    search_fields = ["phone", "name", "first_name"]
    filter_horizontal = ["categories"]
    # Opting out goes through the "Opt out" action, which cancels the pending messages at once.
    readonly_fields = ["opted_out_at", "whatsapp_checked_at", "created_at", "updated_at"]
    change_list_template = "admin/campaigns/contact/change_list.html"
    actions = ["verify_numbers", "opt_out"]

    @admin.action(description=gettext_lazy("Check whether the selected contacts are on WhatsApp"))
    def verify_numbers(self, request, queryset):
        _report_job(self, request, verification_start(contacts=queryset, by=request.user))

    @admin.action(
        description=gettext_lazy("Opt out the selected contacts (cancels their pending messages)"),
        permissions=["change"],
    )
    def opt_out(self, request, queryset):
        contacts = list(queryset)
        cancelled = sum(contact_opt_out(contact=contact) for contact in contacts)
        message = ngettext(
            "%(count)d contact opted out, %(cancelled)d pending messages cancelled.",
            "%(count)d contacts opted out, %(cancelled)d pending messages cancelled.",
            len(contacts),
        )
        facts = {"count": len(contacts), "cancelled": cancelled}
        self.message_user(request, message % facts, messages.SUCCESS)

    def get_urls(self):
        name = f"{self.opts.app_label}_{self.opts.model_name}_import"
        return [path("import/", self.admin_site.admin_view(self.import_view), name=name), *super().get_urls()]

    def import_view(self, request):
        """Upload → preview (a dry run of the whole file) → confirm (the same file, for real)."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        if request.method == "POST" and "token" in request.POST:
            return self._import_confirmed(request)
        form = ContactImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            return self._import_preview(request, form)
        return self._import_page(request, {"form": form})

    def _import_preview(self, request, form):
        token = _upload_store(form.cleaned_data["file"])
        options = {"category": form.cleaned_data["category"], "region": form.cleaned_data["region"]}
        try:
            report = _import_upload(token, dry_run=True, **options)
        except ImportFailed as error:
            _upload_path(token).unlink(missing_ok=True)
            form.add_error("file", str(error))
            return self._import_page(request, {"form": form})
        return self._import_page(request, {"report": report, "token": token, **options})

    def _import_confirmed(self, request):
        token, category, region = (request.POST.get(key, "") for key in ("token", "category", "region"))
        if not _upload_path(token).is_file():
            self.message_user(
                request, _("That upload has expired: please upload the file again."), messages.ERROR
            )
            return redirect("admin:campaigns_contact_import")
        try:
            report = _import_upload(token, dry_run=False, category=category, region=region)
        except ImportFailed as error:
            self.message_user(request, _("Nothing imported: %(error)s") % {"error": error}, messages.ERROR)
            return redirect("admin:campaigns_contact_import")
        finally:
            _upload_path(token).unlink(missing_ok=True)
        self.message_user(request, _imported_message(report), messages.SUCCESS)
        target = Category.objects.get(name=report.category)
        return redirect(f"{reverse('admin:campaigns_contact_changelist')}?categories__id__exact={target.pk}")

    def _import_page(self, request, extra: dict):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Import contacts from a CSV or Excel file"),
            **extra,
        }
        return TemplateResponse(request, "admin/campaigns/contact/import.html", context)


class ContactImportForm(forms.Form):
    file = forms.FileField(
        label=gettext_lazy("CSV or Excel file"),
        help_text=gettext_lazy(
            "CSV (UTF-8, “,” or “;” separated) or Excel .xlsx (its first sheet), with a header line: "
            "téléphone (or phone, tel, mobile), nom, prénom; any other column becomes a contact field."
        ),
    )
    category = forms.CharField(
        label=gettext_lazy("Category"),
        max_length=120,
        help_text=gettext_lazy("Created if it does not exist."),
    )
    region = forms.CharField(
        label=gettext_lazy("Country of national numbers"),
        max_length=2,
        initial=settings.PHONE_DEFAULT_REGION,
        help_text=gettext_lazy("Two letters, e.g. FR: how “06 12 34 56 78” is read."),
    )

    def clean_region(self):
        return self.cleaned_data["region"].upper()

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if refusal := upload_refusal(upload.size):
            raise forms.ValidationError(refusal)
        return upload


def _upload_path(token: str) -> Path:
    # The token comes back from the browser: only our own uuid4 hex names are accepted.
    name = token if len(token) == 32 and all(c in "0123456789abcdef" for c in token) else "invalid"
    return Path(settings.IMPORT_UPLOAD_DIR) / f"{name}.upload"  # CSV or .xlsx: read from its content


def _upload_store(upload) -> str:
    token = uuid.uuid4().hex
    Path(settings.IMPORT_UPLOAD_DIR).mkdir(parents=True, exist_ok=True)
    with _upload_path(token).open("wb") as stored:
        for chunk in upload.chunks():
            stored.write(chunk)
    return token


def _import_upload(token: str, *, dry_run: bool, category: str, region: str):
    with _upload_path(token).open("rb") as stream:
        return contacts_import(file=stream, category=category, region=region, dry_run=dry_run)


def _imported_message(report) -> str:
    return _(
        "%(rows)d rows imported into “%(category)s”: %(new)d new, %(updated)d updated, "
        "%(duplicates)d duplicates merged, %(invalid)d invalid rows skipped."
    ) % {
        "rows": report.rows,
        "category": report.category,
        "new": report.new,
        "updated": report.updated,
        "duplicates": report.duplicate_count,
        "invalid": report.invalid_count,
    }


def _report_job(model_admin, request, job: VerificationJob) -> None:
    if not job.total:
        days = settings.VERIFY_RECHECK_DAYS
        message = _("%(what)s: nothing to check, every number was checked in the last %(days)g days.")
        model_admin.message_user(request, message % {"what": job.label, "days": days}, messages.INFO)
        return
    message = ngettext(
        "%(what)s: %(count)d number will be checked in the background (see WhatsApp number checks).",
        "%(what)s: %(count)d numbers will be checked in the background (see WhatsApp number checks).",
        job.total,
    )
    model_admin.message_user(request, message % {"what": job.label, "count": job.total}, messages.SUCCESS)


@admin.register(VerificationJob)
class VerificationJobAdmin(admin.ModelAdmin):
    list_display = ["label", "status", "total", "done", "valid", "invalid", "skipped", "error", "created_at"]
    list_filter = ["status"]
    readonly_fields = [f.name for f in VerificationJob._meta.fields if f.name != "id"]
    list_select_related = ["category", "campaign"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Campaign)
class CampaignAdmin(LargeTableAdmin):
    list_display = ["name", "status", "device_list", "starts_at", "launched_at", "finished_at", "created_at"]
    list_filter = ["status", "devices", "categories"]
    search_fields = ["name", "message_1_text", "message_2_text"]
    filter_horizontal = ["devices", "categories"]
    readonly_fields = [
        "status",
        "created_by",
        "launched_at",
        "launched_by",
        "finished_at",
        "failed_retries",
        "created_at",
        "updated_at",
    ]
    actions = ["launch_selected", "clone_selected", "verify_recipients", "hand_over_halted"]

    @admin.display(description=gettext_lazy("failed ones sent again"))
    def failed_retries(self, campaign):
        """The audit of "send the failed ones again": who, when, how many (the latest 20)."""
        if campaign.pk is None:
            return "—"
        retries = campaign.failed_retries.select_related("requested_by")[:20]
        rows = [
            _("%(when)s by %(who)s: %(count)d sent again")
            % {
                "when": localize(localtime(r.requested_at)),
                "who": r.requested_by or "—",
                "count": r.messages_retried,
            }
            for r in retries
        ]
        return format_html_join(mark_safe("<br>"), "{}", ((row,) for row in rows)) or "—"

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("devices")

    @admin.display(description=gettext_lazy("devices"))
    def device_list(self, campaign):
        return ", ".join(str(device) for device in campaign.devices.all())

    def get_readonly_fields(self, request, obj=None):
        return [*(obj.frozen_fields() if obj else ()), *self.readonly_fields]

    def has_delete_permission(self, request, obj=None):
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or obj.delete_refusal() is None)

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        campaign = self.get_object(request, unquote(object_id))
        retriable = failed_retriable_count(campaign) if campaign is not None else 0
        return super().change_view(
            request, object_id, form_url, {**(extra_context or {}), "retriable": retriable}
        )

    def get_urls(self):
        name = f"{self.opts.app_label}_{self.opts.model_name}"
        view = self.admin_site.admin_view
        moves = [
            path(f"<path:object_id>/{move}/", view(self.status_view), {"move": move}, name=f"{name}_{move}")
            for move in STATUS_MOVES
        ]
        launch = path("<path:object_id>/launch/", view(self.launch_view), name=f"{name}_launch")
        test_send = path("<path:object_id>/test-send/", view(self.test_send_view), name=f"{name}_test_send")
        return [launch, test_send, *moves, *super().get_urls()]

    @admin.action(description=gettext_lazy("Launch the selected campaign…"))
    def launch_selected(self, request, queryset):
        chosen = list(queryset.values_list("pk", flat=True)[:2])
        if len(chosen) != 1:
            self.message_user(request, _("Choose exactly one campaign to launch."), messages.WARNING)
            return None
        return redirect(self._url("launch", chosen[0]))

    @admin.action(
        description=gettext_lazy("Clone the selected campaigns into new drafts"), permissions=["add"]
    )
    def clone_selected(self, request, queryset):
        for campaign in queryset:
            clone = campaign_clone(campaign=campaign, by=request.user)
            self.message_user(request, cloned_message(campaign, clone), messages.SUCCESS)

    @admin.action(description=gettext_lazy("Check the recipients' WhatsApp numbers before launch"))
    def verify_recipients(self, request, queryset):
        for campaign in queryset:
            _report_job(self, request, verification_start(campaign=campaign, by=request.user))

    @admin.action(
        description=gettext_lazy(
            "Move the unsent Message 1s of halted devices to the campaign's other devices"
        ),
        permissions=["change"],
    )
    def hand_over_halted(self, request, queryset):
        for campaign in queryset:
            try:
                moved = campaign_hand_over(campaign=campaign)
            except CampaignRefused as refusal:
                self.message_user(request, refusal.message, messages.ERROR)
                continue
            self.message_user(request, handed_over_message(campaign, moved), messages.SUCCESS)

    def launch_view(self, request, object_id):
        """GET: what the launch would do; POST: launch. A refusal is a message, never a 500."""
        campaign = self._campaign(request, object_id)
        if not isinstance(campaign, Campaign):
            return campaign
        if request.method == "POST":
            return self._launch(request, campaign)
        context = {
            **self._context(request, campaign, _("Launch “%(name)s”") % {"name": campaign.name}),
            **launch_page_context(campaign=campaign),
            "attachments": campaign_attachments(campaign),
        }
        return TemplateResponse(request, "admin/campaigns/campaign/launch_confirmation.html", context)

    def _launch(self, request, campaign):
        multi_day = request.POST.get("allow_multi_day") == "1"
        try:
            result = campaign_launch(campaign=campaign, by=request.user, allow_multi_day=multi_day)
        except CampaignRefused as refusal:
            self.message_user(request, refusal.message, messages.ERROR)
            return redirect(self._url("launch", campaign.pk))
        self.message_user(request, launched_message(result), messages.SUCCESS)
        return redirect(self._url("change", campaign.pk))

    def test_send_view(self, request, object_id):
        """GET: whose Message 1, to which number; POST: queue it on the campaign's device."""
        campaign = self._campaign(request, object_id)
        if not isinstance(campaign, Campaign):
            return campaign
        form = TestSendForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            done = test_send_form_run(campaign=campaign, form=form, by=request.user)
            if done:
                self.message_user(request, done, messages.SUCCESS)
                return redirect(self._url("change", campaign.pk))
        context = {**self._context(request, campaign, _("Test send of “%(name)s”") % {"name": campaign.name})}
        context["form"] = form
        return TemplateResponse(request, "admin/campaigns/campaign/test_send.html", context)

    def status_view(self, request, object_id, move):
        """GET: confirm pause, resume or cancel; POST: do it."""
        campaign = self._campaign(request, object_id)
        if not isinstance(campaign, Campaign):
            return campaign
        if request.method != "POST":
            return self._status_confirmation(request, campaign, move)
        try:
            done = move_run(campaign=campaign, move=move, by=request.user)
        except CampaignRefused as refusal:
            self.message_user(request, refusal.message, messages.ERROR)
            return redirect(self._url("change", campaign.pk))
        self.message_user(request, done, messages.SUCCESS)
        return redirect(self._url("change", campaign.pk))

    def _status_confirmation(self, request, campaign, move):
        title = _("%(action)s “%(name)s”") % {"action": STATUS_MOVES[move].title, "name": campaign.name}
        context = {
            **self._context(request, campaign, title),
            "move": STATUS_MOVES[move],
            "move_name": move,
            "pending": move_pending(campaign=campaign, move=move),
            "allowed": move_allowed(campaign=campaign, move=move),
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
