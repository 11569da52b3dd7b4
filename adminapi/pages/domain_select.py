"""Choosing a domain in filters and forms: a drop-down list while the admin has few domains,
a text field (the domain's name) once a list would be too long to load and to scroll."""

from __future__ import annotations

from dataclasses import dataclass

from adminapi.pages.forms import Form
from adminapi.pages.web import Page
from dinomail import validation as v
from dinomail.store import NotFound, domains

# Past this many domains a <select> is a burden (page weight, scrolling): the admin types.
MAX_CHOICES = 200


@dataclass(frozen=True)
class DomainChoices:
    """(name, shown name) pairs, or None when the admin types the name instead."""

    options: list[tuple[str, str]] | None


async def domain_choices(page: Page) -> DomainChoices:
    async with page.store.read() as conn:
        if await domains.count(conn, page.scope) > MAX_CHOICES:
            return DomainChoices(None)
        names = await domains.names(conn, page.scope)
    return DomainChoices([(name, v.display_domain(name)) for _, name in names])


async def find_domain(page: Page, typed: str) -> dict | None:
    """The domain the admin named (ASCII or Unicode form), if it is one of theirs."""
    try:
        name = v.normalize_domain(typed, "domain")
    except v.ValidationError:
        return None
    async with page.store.read() as conn:
        try:
            return await domains.get_by_name(conn, page.scope, name)
        except NotFound:
            return None


async def domain_filter(page: Page) -> tuple[dict | None, str | None]:
    """A list's `?domain=`: (the domain, if it is one of the admin's; what was typed, when it
    is not). The original sent an unknown domain back to the unfiltered list; the pages say so
    instead."""
    typed = page.request.query_params.get("domain", "").strip()
    domain = await find_domain(page, typed) if typed else None
    return domain, typed if typed and domain is None else None


async def posted_domain_id(page: Page, form: Form, name: str, *, required: bool = False
                           ) -> int | None:
    """The id of the domain chosen in the form's field `name`; None when left empty (an error
    if `required`) or not one of the admin's (an error)."""
    form.values[name] = page.form_data.text(name)
    if not form.values[name]:
        if required:
            form.add_error(name, page._("This field is required."))
        return None
    domain = await find_domain(page, form.values[name])
    if domain is None:
        form.add_error(name, page._("No such domain among yours."))
        return None
    return int(domain["id"])
