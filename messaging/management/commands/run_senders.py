"""`manage.py run_senders`: one sender loop process (messaging/loop.py says why a process)."""

import logging
import signal

from django.core.management.base import BaseCommand

from messaging.loop import SenderLoop

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Run a sender loop: serve every due device under its lease until SIGTERM or SIGINT, then "
        "finish the sends in flight, release the leases and exit. Run several to share the devices."
    )

    def add_arguments(self, parser):
        parser.add_argument("--threads", type=int, help="Sends in flight at once (SENDER_LOOP_THREADS).")

    def handle(self, *args, threads, **options):
        loop = SenderLoop(threads=threads)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: loop.stop())
        logger.info("sender loop %s started", loop.owner)
        loop.run()
        logger.info("sender loop %s stopped: leases released", loop.owner)
