"""Whether Qt can open a window here, checked without Qt (no PySide6 import).

When Qt's window-system plugin cannot connect to a display it aborts the
whole process (SIGABRT, exit 134) with a page of plugin diagnostics. The app
checks first and says in one line what is missing instead. Only the cases
that are certain are reported; anything else is left to Qt.
"""

from __future__ import annotations

import os
import re
import socket
import sys

# Qt platform plugins that need no display server.
_HEADLESS = {"offscreen", "minimal", "vnc", "eglfs", "linuxfb", "vkkhrdisplay"}


def display_problem(environ: dict[str, str] | None = None) -> str | None:
    """One line saying why no window can be opened, or None when it looks possible."""
    env = os.environ if environ is None else environ
    if not sys.platform.startswith("linux") and environ is None:
        return None  # Windows and macOS always have their window system
    platform = env.get("QT_QPA_PLATFORM", "").split(":", 1)[0].strip().lower()
    if platform in _HEADLESS:
        return None
    wayland = env.get("WAYLAND_DISPLAY")
    display = env.get("DISPLAY")
    if platform.startswith("wayland"):
        return None if wayland else "QT_QPA_PLATFORM is wayland but WAYLAND_DISPLAY is not set"
    if platform not in ("", "xcb"):
        return None  # a plugin we do not know: let Qt decide
    if not display:
        if wayland and platform == "":
            return None
        return ("no display (DISPLAY is not set); run it in a desktop session, "
                "or use the commands (persam-studio --help)")
    if not _x_server_reachable(display):
        return f"cannot connect to the X display {display!r}"
    return None


def _x_server_reachable(display: str) -> bool:
    """Whether an X server answers at ``display`` (":0", "host:1.0", "unix:0").

    Only local displays are probed (a Unix socket connect, instant); a remote
    or unusual display string counts as reachable, so Qt decides.
    """
    m = re.fullmatch(r"(?P<host>[^:]*):(?P<num>\d+)(\.\d+)?", display)
    if not m or m.group("host") not in ("", "unix"):
        return True
    path = f"/tmp/.X11-unix/X{m.group('num')}"
    for address in (path, "\0" + path):  # the file, then Linux's abstract socket
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            try:
                sock.connect(address)
                return True
            except OSError:
                continue
    return False
