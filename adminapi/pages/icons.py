"""Icons drawn inline as SVG: no icon font, no request to another site (the original loaded
FontAwesome from kit.fontawesome.com). Every icon is decorative and hidden from screen
readers; the text beside it, visible or not, says what the control does."""

from __future__ import annotations

from markupsafe import Markup

# 24×24 outlines, stroked with the text colour.
_PATHS = {
    "home": "M3 11l9-8 9 8M5 9.5V21h5v-6h4v6h5V9.5",
    "globe": "M12 3a9 9 0 1 0 0 18a9 9 0 1 0 0-18M3 12h18M12 3c2.8 3 2.8 15 0 18"
             "M12 3c-2.8 3-2.8 15 0 18",
    "user": "M12 12a4 4 0 1 0 0-8a4 4 0 1 0 0 8M4 21c0-4 3.6-6 8-6s8 2 8 6",
    "forward": "M4 12h14M13 6l6 6-6 6",
    "link": "M10 14a4 4 0 0 0 5.7 0l3-3a4 4 0 0 0-5.7-5.7l-1 1M14 10a4 4 0 0 0-5.7 0l-3 3"
            "a4 4 0 0 0 5.7 5.7l1-1",
    "gauge": "M4 18a8 8 0 1 1 16 0M12 18l4-6",
    "key": "M15 9a3 3 0 1 0 0-.01M13 11l-9 9M7 17l2 2M9 15l2 2",
    "search": "M11 4a7 7 0 1 0 0 14a7 7 0 1 0 0-14M16 16l5 5",
    "edit": "M4 20h4L19 9l-4-4L4 16zM14 6l4 4",
    "trash": "M4 7h16M9 7V4h6v3M6 7l1 13h10l1-13M10 11v6M14 11v6",
    "lock": "M6 11h12v10H6zM8.5 11V8a3.5 3.5 0 0 1 7 0v3",
    "download": "M12 4v11M7 10l5 5 5-5M5 20h14",
    "logout": "M10 4H5v16h5M15 8l4 4-4 4M19 12H9",
    "check": "M5 12.5l4.5 4.5L19 7",
    "warning": "M12 3l10 18H2zM12 10v5M12 17.5v.5",
    "plus": "M12 5v14M5 12h14",
    "shield": "M12 3l8 3v6c0 5-3.5 8-8 9c-4.5-1-8-4-8-9V6z",
    "refresh": "M20 11a8 8 0 0 0-14.5-4.5M4 4v4h4M4 13a8 8 0 0 0 14.5 4.5M20 20v-4h-4",
    "menu": "M4 7h16M4 12h16M4 17h16",
    "language": "M4 5h9M8.5 3v2M6 5c1 4 4 7 7 8M11 5c-1 4-4 7-7 8M13 21l4-9 4 9M14.5 18h5",
    "list": "M9 6h11M9 12h11M9 18h11M4 6h1M4 12h1M4 18h1",
}


def icon(name: str) -> Markup:
    return Markup(
        '<svg class="icon" viewBox="0 0 24 24" aria-hidden="true" focusable="false">'
        f'<path d="{_PATHS[name]}"/></svg>'
    )
