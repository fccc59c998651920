from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


class MessagingConfig(AppConfig):
    name = "messaging"
    verbose_name = _("Messaging")

    def ready(self) -> None:
        post_migrate.connect(_after_migrate, sender=self)


def _after_migrate(sender, using, **kwargs) -> None:
    """First run (and every migrate): the cache table (django-q2's cluster status, API
    throttling), a default device and the declared schedules all exist."""
    from django.core.management import call_command

    from messaging.devices import device_ensure_default

    call_command("createcachetable", database=using, verbosity=0)
    device_ensure_default()
    call_command("setup_schedules", verbosity=0)
