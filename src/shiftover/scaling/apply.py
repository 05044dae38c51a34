"""Write a recommended setting back into ``scaling.yaml``, keeping the user's file.

``shiftover scale recommend --apply-to FILE`` ends where ``shiftover scale
manifests --config FILE`` starts, so the path from a trace to manifests needs
no hand editing. The file is the team's own (comments, key order, flow or
block style, quoting), so it is edited with ruamel.yaml's round-trip mode:
only the values that change are touched, and everything else is written
back as it was read.

Where each knob lives is where :mod:`shiftover.scaling.config` reads it:

* ``web.hpa.min_replicas`` and ``web.hpa.target_per_pod``;
* the scale-down stabilization window: ``web.hpa.behavior.scaleDown.stabilizationWindowSeconds``
  when the web HPA has a ``behavior``, else ``controller.downscale_stabilization``
  (kube-controller-manager's flag, for every HPA of the cluster);
* ``cluster.overprovisioning.pods``.

The write is atomic (a temporary file beside the target, then a rename), and
the temporary file is loaded with :func:`~shiftover.scaling.config.load_config`
and must hold exactly the setting asked for before it replaces anything: a
file that no longer validates, or a value set through a YAML alias that did
not take, never reaches the target.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shiftover.errors import BadInput, ShiftoverError
from shiftover.scaling.config import load_config
from shiftover.scaling.recommend import Setting, format_value

_NESTED_KEY = re.compile(r"^( +)[^\s#\-][^:\n]*:", re.MULTILINE)  # an indented mapping key


@dataclass(frozen=True)
class Change:
    """One key of the file: its dotted path, the value before and after."""

    key: str
    old: float
    new: float

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "old": self.old, "new": self.new}

    def __str__(self) -> str:
        return f"{self.key}: {format_value(self.old)} -> {format_value(self.new)}"


@dataclass(frozen=True)
class Applied:
    """What ``apply_setting`` did: the file, the keys it changed, whether it wrote."""

    path: Path
    changes: tuple[Change, ...]
    written: bool

    def to_dict(self) -> dict[str, Any]:
        return {"file": str(self.path), "written": self.written, "changes": [c.to_dict() for c in self.changes]}


def check_target(dest: Path) -> None:
    """Refuse a destination that cannot be written, before a long sweep rather than after it."""
    if dest.is_dir():
        raise BadInput(f"--apply-to {dest} is a directory", hint="give a file name, e.g. --apply-to scaling.yaml")
    parent = dest.parent if str(dest.parent) else Path(".")
    if not parent.is_dir():
        raise BadInput(f"--apply-to {dest}: the directory {parent} does not exist", hint=f"mkdir -p {parent}")
    # try it: os.access says yes to root on any mode, and knows nothing of read-only mounts
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{dest.name}.", suffix=".check"):
            pass
        if dest.exists():
            with dest.open("r+b"):
                pass
    except OSError as exc:
        raise BadInput(
            f"--apply-to {dest}: not writable ({exc.strerror or exc})", hint="choose a file in a directory you can write"
        ) from None


def apply_setting(source: Path, setting: Setting, dest: Path | None = None) -> Applied:
    """Write ``source`` with ``setting`` to ``dest`` (``source`` itself by default).

    Only the keys whose value changes are edited. When ``dest`` is ``source``
    and nothing changes, the file is left alone (``written`` is False).
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.util import load_yaml_guess_indent

    dest = dest or source
    config = load_config(source)  # validates, and names file:line:col if it does not
    old = Setting.of(config)
    text = source.read_text(encoding="utf-8")
    # ruamel guesses a block sequence's indent (dash offset, content); the mapping indent is ours to find
    _, seq_indent, dash_offset = load_yaml_guess_indent(text)
    keys = [len(m.group(1)) for m in _NESTED_KEY.finditer(text)]
    map_indent = min(keys) if keys else 2
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap the user's long lines
    if dash_offset is None:  # no block sequence in the file
        yaml.indent(mapping=map_indent, sequence=map_indent, offset=0)
    else:
        yaml.indent(mapping=map_indent, sequence=seq_indent, offset=dash_offset)
    doc = yaml.load(text)

    def section(*keys: str) -> Any:
        node = doc
        for k in keys:
            if not isinstance(node.get(k), dict):
                node[k] = CommentedMap()
            node = node[k]
        return node

    changes: list[Change] = []

    def put(keys: tuple[str, ...], before: float, after: float, value: Any) -> None:
        if before == after:
            return
        section(*keys[:-1])[keys[-1]] = value
        changes.append(Change(".".join(keys), before, after))

    put(("web", "hpa", "min_replicas"), old.min_replicas, setting.min_replicas, setting.min_replicas)
    target = float(setting.target_per_pod)
    put(("web", "hpa", "target_per_pod"), old.target_per_pod, target, int(target) if target.is_integer() else target)
    if config.web.hpa.behavior is not None:
        window_key: tuple[str, ...] = ("web", "hpa", "behavior", "scaleDown", "stabilizationWindowSeconds")
        window: Any = setting.scale_down_window
    else:
        window_key = ("controller", "downscale_stabilization")
        written = (doc.get("controller") or {}).get("downscale_stabilization")
        # keep the file's spelling: a duration stays a duration (300s, 5m), a number a number
        window = f"{setting.scale_down_window}s" if isinstance(written, str) else setting.scale_down_window
    put(window_key, old.scale_down_window, setting.scale_down_window, window)
    put(("cluster", "overprovisioning", "pods"), old.headroom_pods, setting.headroom_pods, setting.headroom_pods)

    if dest.resolve() == source.resolve() and not changes:
        return Applied(dest, (), written=False)
    buf = io.StringIO()
    yaml.dump(doc, buf)
    _write_checked(dest, buf.getvalue(), setting)
    return Applied(dest, tuple(changes), written=True)


def _write_checked(dest: Path, text: str, setting: Setting) -> None:
    """Write ``text`` to a temporary file beside ``dest``, check it, then rename it over ``dest``."""
    if dest.is_symlink():
        dest = dest.resolve()  # write the file the link points to; the link stays a link
    parent = dest.parent if str(dest.parent) else Path(".")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise BadInput(f"cannot write {dest}: {exc.strerror or exc}") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            got = Setting.of(load_config(tmp))
        except ShiftoverError as exc:
            raise ShiftoverError(f"the config written for {dest} does not validate ({exc}); {dest} is unchanged") from None
        if got != setting:
            raise ShiftoverError(
                f"the config written for {dest} holds {got}, not {setting} (a value set through a YAML alias?); "
                f"{dest} is unchanged"
            )
        if dest.exists():
            os.chmod(tmp, dest.stat().st_mode & 0o7777)
        else:
            os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


__all__ = ["Applied", "Change", "apply_setting", "check_target"]
