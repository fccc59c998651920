import argparse
import signal

from django.core.management.base import BaseCommand, CommandError

from messaging.wassenger.sandbox.server import Faults, Sandbox, sandbox_config

# flag → (Faults field, help)
FAULT_FLAGS = {
    "fail_500": ("error_500", "share of sends answered 500 (nothing recorded)"),
    "fail_429": ("rate_limit_429", "share of sends answered 429 (nothing recorded)"),
    "retry_after_share": ("rate_limit_retry_after", "share of those 429s carrying Retry-After"),
    "retry_after_seconds": ("retry_after_seconds", "the Retry-After value, in seconds"),
    "slow": ("slow", "share of sends recorded, then answered after --slow-seconds"),
    "slow_seconds": ("slow_seconds", "delay of a slow answer (beyond the client's read timeout)"),
    "drop_after_read": ("drop_after_read", "share of sends recorded, then the socket closed unanswered"),
    "drop_before_accept": ("drop_before_accept", "share of sends not recorded, the socket closed unanswered"),
    "fail_500_accepted": ("error_500_accepted", "share of sends recorded (queued), then answered 500"),
    "fail_409": ("conflict_409", "share of sends recorded (queued), then answered 409"),
    "device_not_found": ("device_not_found", "share of sends answered 404 device not found"),
    "queue_reject": ("queue_reject", "share of sends refused by a queue in reject mode (400)"),
    "queue_freeze": ("queue_freeze", "share of sends refused by a frozen queue (400)"),
}
# flag → help; each overrides the WASSENGER_SANDBOX_* setting of the same name.
CONFIG_FLAGS = {
    "sent_delay": "seconds from acceptance to message:out:new",
    "delivered_delay": "seconds from message:out:new to the delivered ack",
    "read_delay": "seconds from the delivered ack to the read ack",
    "reply_delay": "seconds from the read ack to a reply",
    "reply_share": "share of contacts that reply",
    "stop_share": "share of replies that are stop words",
    "spec_shape_share": "share of contacts whose replies have fromNumber = the device (SPEC's shape)",
    "group_share": "share of contacts who also write in a group chat",
    "webhook_retries": "retries of a refused webhook",
    "webhook_backoff": "seconds before the first webhook retry (then doubling)",
}


class Command(BaseCommand):
    help = "Run the local Wassenger stand-in on loopback: the /v1 API, /sandbox controls, webhooks back."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, help="0 picks a free port (printed on start)")
        parser.add_argument("--token", help="the Token to expect (default: WASSENGER_API_TOKEN)")
        parser.add_argument("--webhook-url", help="where to POST webhooks; '' sends none")
        parser.add_argument("--seed", type=int, help="seed of fault draws and of who replies")
        parser.add_argument("--invalid-suffix", help="numbers ending with this do not exist")
        parser.add_argument(
            "--state-file",
            help="save what the sandbox took to this file on stop, load it on start (an outage test)",
        )
        parser.add_argument(
            "--receipt-reference",
            action=argparse.BooleanOptionalAction,
            help="receipts carry Relance's reference (Wassenger's documented ones do not)",
        )
        parser.add_argument(
            "--out-new", action=argparse.BooleanOptionalAction, help="post message:out:new (default: yes)"
        )
        for flag, (_, text) in FAULT_FLAGS.items():
            parser.add_argument(f"--{flag.replace('_', '-')}", type=float, help=text)
        for flag, text in CONFIG_FLAGS.items():
            kind = int if flag == "webhook_retries" else float
            parser.add_argument(f"--{flag.replace('_', '-')}", type=kind, help=text)

    def handle(self, *args, **options):
        faults = {
            field: options[flag] for flag, (field, _) in FAULT_FLAGS.items() if options[flag] is not None
        }
        given = (
            "port",
            "token",
            "webhook_url",
            "seed",
            "invalid_suffix",
            "receipt_reference",
            "out_new",
            "state_file",
        )
        overrides = {key: options[key] for key in given}
        overrides.update({flag: options[flag] for flag in CONFIG_FLAGS})
        try:
            sandbox = Sandbox(sandbox_config(**overrides), Faults().updated(faults))
        except (ValueError, OSError) as error:
            raise CommandError(f"cannot start the sandbox: {error}") from error
        self._announce(sandbox)
        # SIGTERM (the run supervisor's stop) ends serve_forever the way Ctrl-C does.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            sandbox.serve_forever()
        except KeyboardInterrupt:
            pass

    def _announce(self, sandbox: Sandbox) -> None:
        hooks = sandbox.config.webhook_url.split("?")[0] or "off"
        self.stdout.write(
            f"Wassenger sandbox on {sandbox.url}/v1 (controls: {sandbox.url}/sandbox/, webhooks: {hooks})"
        )
        self.stdout.flush()
