from django.contrib import admin
from django.db.models import Count

from campaigns.models import Campaign, Category, Contact


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


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ["name", "status", "device", "starts_at", "launched_at", "finished_at", "created_at"]
    list_filter = ["status", "device", "categories"]
    search_fields = ["name", "message_1_text", "message_2_text"]
    list_select_related = ["device"]
    filter_horizontal = ["categories"]
    readonly_fields = ["status", "created_by", "launched_at", "finished_at", "created_at", "updated_at"]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
