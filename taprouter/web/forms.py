"""The policy form: text fields as `taprouter policy add` takes them; model.parse and the store
judge them, and their PolicyError is put on the field it names."""

from __future__ import annotations

from typing import Any

from django import forms

from ..policy.model import Action, Policy, PolicyError

_TEXT = {"required": False, "strip": True}


class PolicyForm(forms.Form):
    router = forms.ChoiceField()
    name = forms.CharField(max_length=64)
    priority = forms.CharField(initial="100", help_text="0..999, the higher first", **_TEXT)
    in_port = forms.CharField(label="In port(s)", help_text="N or N,N", **_TEXT)
    src = forms.CharField(label="Source", help_text="address or prefix", **_TEXT)
    dst = forms.CharField(label="Destination", help_text="address or prefix", **_TEXT)
    proto = forms.CharField(label="Protocol", help_text="tcp, udp, icmp, icmpv6, sctp or a number", **_TEXT)
    sport = forms.CharField(label="Source port", help_text="N or N-M", **_TEXT)
    dport = forms.CharField(label="Destination port", help_text="N or N-M", **_TEXT)
    icmp_type = forms.CharField(label="ICMP type", **_TEXT)
    action = forms.ChoiceField(choices=[(a.value, a.value) for a in Action])
    via = forms.CharField(help_text="forward's next hop", **_TEXT)
    rate = forms.CharField(help_text="police's rate: N pps or N kbps", **_TEXT)
    to_router = forms.BooleanField(required=False, label="Also traffic to the router itself")
    enabled = forms.BooleanField(required=False, initial=True)
    idle_timeout = forms.CharField(help_text="seconds", **_TEXT)
    hard_timeout = forms.CharField(help_text="seconds", **_TEXT)
    comment = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), **_TEXT)

    FIELDS = ("priority", "in_port", "src", "dst", "proto", "sport", "dport", "icmp_type", "action", "via",
              "rate", "idle_timeout", "hard_timeout", "comment")

    def __init__(self, *args, routers: list[str], editing: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["router"].choices = [(r, r) for r in routers]
        if editing:  # a policy is named by router and name: those stay as they are
            for key in ("router", "name"):
                self.fields[key].disabled = True

    def changes(self) -> dict[str, Any]:
        """The cleaned form as model.parse's fields; '' unsets a field (the store's update)."""
        data = self.cleaned_data
        changes = {key: data.get(key) or "" for key in self.FIELDS}
        changes["to_router"] = "yes" if data.get("to_router") else "no"
        changes["enabled"] = "yes" if data.get("enabled") else "no"
        return changes

    def refused(self, error: PolicyError) -> None:
        """Put the store's or the parser's refusal on the field it names (the form's top if none)."""
        field = error.field.rpartition(".")[2]
        self.add_error(field if field in self.fields else None, error.message)


def initial(policy: Policy) -> dict[str, Any]:
    """A stored policy as the form's initial values."""
    from ..policy import document

    fields = document.fields(policy)
    values: dict[str, Any] = {"router": policy.router, "name": policy.name}
    for key, value in fields.items():
        if key == "in_port":
            value = ",".join(map(str, value))
        values[key] = value
    values["to_router"] = policy.to_router
    values["enabled"] = policy.enabled
    return values
