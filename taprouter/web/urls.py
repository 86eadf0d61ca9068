"""The web UI's URLs; every one but the login page needs a logged-in user (LoginRequiredMiddleware)."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from . import people, policies, state

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", state.overview, name="overview"),
    path("devices/", state.devices, name="devices"),
    path("routing/", state.routing, name="routing"),
    path("routing/bird/reload/", state.reload_bird, name="bird-reload"),
    path("policies/", policies.index, name="policies"),
    path("policies/add/", policies.add, name="policy-add"),
    path("policies/export/", policies.export, name="policy-export"),
    path("policies/import/", policies.import_, name="policy-import"),
    path("policies/<str:router>/<str:name>/edit/", policies.edit, name="policy-edit"),
    path("policies/<str:router>/<str:name>/enable/", policies.turn, {"verb": "enable"}, name="policy-enable"),
    path("policies/<str:router>/<str:name>/disable/", policies.turn, {"verb": "disable"}, name="policy-disable"),
    path("policies/<str:router>/<str:name>/delete/", policies.turn, {"verb": "delete"}, name="policy-delete"),
    path("audit/", people.audit, name="audit"),
    path("users/", people.users, name="users"),
    path("users/<str:name>/", people.user, name="user"),
]
