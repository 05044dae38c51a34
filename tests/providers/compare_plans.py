"""The head of the small plan files the compare gates' tests write: an HAProxy router
and steps, up to ``normal_state:`` (5 lines: the first gate starts on line 6)."""

from __future__ import annotations


def head(*, old: str = "old", new: str = "new", steps: str = "[10, 100]",
         timing: str = "bake: 10s\n") -> str:
    return ("service: web\n"
            f"router: {{type: haproxy, socket: /tmp/x.sock, backend: web, old: {old}, new: {new}}}\n"
            f"steps: {steps}\n{timing}"
            "normal_state:\n")
