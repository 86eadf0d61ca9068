"""The Django app of taprouter's tables: label `taprouter`, so they are named taprouter_*."""

from django.apps import AppConfig


class TaprouterDbConfig(AppConfig):
    name = "taprouter.db"
    label = "taprouter"
    verbose_name = "taprouter"
    default_auto_field = "django.db.models.AutoField"
