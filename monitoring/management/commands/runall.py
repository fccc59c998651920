import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command, get_commands
from django.core.management.base import BaseCommand

from monitoring.supervisor import Child, Supervisor, manage_py


class Command(BaseCommand):
    help = (
        "Migrate, then run the web server, the django-q clusters, the sender loop and (without a "
        "token) the sandbox."
    )

    def add_arguments(self, parser):
        parser.add_argument("--addr", default="127.0.0.1:8000", help="Where the web server listens.")

    def handle(self, *args, addr, **options):
        call_command("migrate", interactive=False, verbosity=0)
        call_command("createcachetable", verbosity=0)
        call_command("setup_schedules", verbosity=1)
        login = self._ensure_admin_user()
        self.stdout.write(self.style.SUCCESS(f"\nRelance is starting: http://{addr}/admin/"))
        self.stdout.write(f"{login}\nStop everything with Ctrl-C.\n")
        Supervisor(self._children(addr)).run()

    def _children(self, addr: str) -> list[Child]:
        children = [
            Child("web", manage_py("runserver", addr, "--noreload")),
            Child("cluster", manage_py("qcluster")),
            # The sender loop, a process of its own (messaging/loop.py says why), stopped first:
            # it records its sends in flight while the sandbox still answers.
            Child("senders", manage_py("run_senders"), stop_first=True),
            Child("verify", manage_py("qcluster"), env={"Q_CLUSTER_NAME": settings.VERIFY_CLUSTER}),
        ]
        if settings.WASSENGER_SANDBOX and "wassenger_sandbox" in get_commands():
            children.append(Child("sandbox", manage_py("wassenger_sandbox")))
        return children

    def _ensure_admin_user(self) -> str:
        """Create the first admin from DJANGO_SUPERUSER_* or with a printed one-time password."""
        users = get_user_model().objects
        if users.filter(is_superuser=True).exists():
            return "Log in with your admin account (reset it with: python manage.py changepassword NAME)."
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "admin")
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD") or secrets.token_urlsafe(12)
        users.create_superuser(username, os.environ.get("DJANGO_SUPERUSER_EMAIL", ""), password)
        if os.environ.get("DJANGO_SUPERUSER_PASSWORD"):
            return f"Log in as {username!r} with the password from DJANGO_SUPERUSER_PASSWORD."
        return (
            f"Log in as {username!r} with the one-time password {password!r} "
            "(shown once; change it with: python manage.py changepassword admin)."
        )
