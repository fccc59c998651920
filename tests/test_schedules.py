"""config/schedules.py: the one declaration of every app's periodic jobs."""

from importlib import import_module

import pytest
from django.core.management import call_command
from django_q.models import Schedule

from config.schedules import SCHEDULES


def test_every_declared_schedule_names_a_task_that_exists():
    for spec in SCHEDULES:
        module, _, name = spec.func.rpartition(".")
        assert callable(getattr(import_module(module), name)), spec.func


def test_schedule_names_are_unique():
    names = [spec.name for spec in SCHEDULES]
    assert len(names) == len(set(names))


@pytest.mark.django_db
def test_setup_schedules_writes_exactly_the_declaration():
    Schedule.objects.all().delete()
    call_command("setup_schedules", verbosity=0)
    stored = {row.name: (row.func, row.schedule_type, row.minutes) for row in Schedule.objects.all()}
    assert stored == {spec.name: (spec.func, spec.schedule_type, spec.minutes) for spec in SCHEDULES}
