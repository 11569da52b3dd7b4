"""`DINOMAIL_LEGALS`, written by the admin as HTML, made safe to show.

The original inserted it unescaped. Here the text is parsed and written out again: text is
escaped, the tags of a short allow-list are rebuilt from their names, links keep only an
http(s) or mailto address, and everything else disappears (the content of `script` and `style`
with it). Nothing of the input reaches the page without going through this rebuild.
"""

from __future__ import annotations

from html import escape
from html.parser import HTMLParser
from urllib.parse import urlsplit

from markupsafe import Markup

ALLOWED_TAGS = frozenset({
    "p", "br", "strong", "b", "em", "i", "u", "ul", "ol", "li", "a", "h2", "h3", "h4",
    "blockquote", "code", "small", "address",
})
VOID_TAGS = frozenset({"br"})
# Their content is code or styling, never text for the reader.
DROPPED_WITH_CONTENT = frozenset({"script", "style", "template", "iframe", "object", "noscript"})
LINK_SCHEMES = frozenset({"http", "https", "mailto"})
# An element nested deeper than this is flattened; legal text is never that deep.
MAX_DEPTH = 20


def safe_link(href: str | None) -> str | None:
    if not href:
        return None
    href = href.strip()
    if any(ord(char) < 32 for char in href):
        return None
    scheme = urlsplit(href).scheme.lower()
    return href if scheme in LINK_SCHEMES else None


class _Rebuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.open: list[str] = []
        self.skipping: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.skipping or tag in DROPPED_WITH_CONTENT:
            if tag in DROPPED_WITH_CONTENT:
                self.skipping.append(tag)
            return
        if tag not in ALLOWED_TAGS:
            return
        if tag in VOID_TAGS:
            self.out.append(f"<{tag}>")
            return
        if len(self.open) >= MAX_DEPTH:
            return
        if tag == "a":
            href = safe_link(dict(attrs).get("href"))
            if href is None:
                self.out.append("<a>")
            else:
                self.out.append(f'<a href="{escape(href, quote=True)}" rel="noopener noreferrer '
                                'nofollow">')
        else:
            self.out.append(f"<{tag}>")
        self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in VOID_TAGS and not self.skipping:
            self.out.append(f"<{tag}>")

    def handle_endtag(self, tag: str) -> None:
        if self.skipping:
            if tag == self.skipping[-1]:
                self.skipping.pop()
            return
        if tag not in self.open:
            return
        # Close whatever was left open inside it, so the output stays well nested.
        while self.open:
            inner = self.open.pop()
            self.out.append(f"</{inner}>")
            if inner == tag:
                break

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.out.append(escape(data, quote=False))

    def result(self) -> str:
        self.close()
        return "".join(self.out) + "".join(f"</{tag}>" for tag in reversed(self.open))


def render_legals(text: str) -> Markup:
    """The admin's legal text as safe HTML (comments, unknown tags and attributes removed)."""
    if not text.strip():
        return Markup("")
    rebuilder = _Rebuilder()
    rebuilder.feed(text)
    return Markup(rebuilder.result())
