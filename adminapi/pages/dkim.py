"""A domain's DKIM key in the pages: the key and the TXT record to publish, its DNS check, and
generating a key (RSA 2048 by default, Ed25519 as an option) or rotating to a new one under a
new selector, exactly as `POST /api/virtualdomain/<id>/dkim/` does (the same store calls). The
selectors a rotation replaced stay listed, with their records, until the admin retires them
(as `POST /api/virtualdomain/<id>/dkim/retire/`).

The private key never reaches a page: the store reads it only for the signer's export.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.responses import Response

from adminapi.pages.domains import OUTCOMES, check_status, status_of
from adminapi.pages.forms import N_, Form
from adminapi.pages.web import Page
from dinomail import dkim
from dinomail import validation as v
from dinomail.dnscheck import read_report
from dinomail.store import StoreError, domains
from dinomail.store import dns as dns_store
from dinomail.store.common import now

ALGORITHM_LABELS = {dkim.RSA: N_("RSA (every receiver checks it)"),
                    dkim.ED25519: N_("Ed25519 (short; not every receiver checks it yet)")}


def _empty_form() -> Form:
    return Form(values={"algorithm": dkim.RSA, "key_bits": str(dkim.DEFAULT_RSA_BITS),
                        "selector": ""})


async def _render(page: Page, domain_id: int, form: Form, *, status: int = 200,
                  retire_form: Form | None = None) -> Response:
    async with page.store.read() as conn:
        domain = await domains.get(conn, page.scope, domain_id)
        key = await dns_store.dkim_key(conn, page.scope, domain_id)
        retiring = await dns_store.retiring_keys(conn, page.scope, domain_id)
    report = await read_report(page.store, page.settings, page.scope, domain_id)
    return page.render(
        "domain_dkim.html", status=status, domain=domain, form=form,
        retire_form=retire_form or Form(values={"selector": ""}),
        key=dns_store.key_summary(domain, key, retiring), result=report.check("dkim"),
        pending=report.pending, status_of=status_of, check_status=check_status,
        outcome_label=OUTCOMES, algorithms=ALGORITHM_LABELS, key_sizes=dkim.RSA_KEY_BITS,
    )


def _read_choices(page: Page, form: Form) -> dict[str, Any]:
    data = page.form_data
    for name in form.values:
        form.values[name] = data.text(name)
    algorithm = form.values["algorithm"] or dkim.RSA
    choices: dict[str, Any] = {"algorithm": algorithm, "key_bits": dkim.DEFAULT_RSA_BITS,
                               "selector": None}
    if algorithm not in dkim.ALGORITHMS:
        form.add_error("algorithm", page._("Choose RSA or Ed25519."))
    if algorithm == dkim.RSA and form.values["key_bits"]:
        bits = form.values["key_bits"]
        if not (bits.isdigit() and int(bits) in dkim.RSA_KEY_BITS):
            form.add_error("key_bits", page._("Choose 2048, 3072 or 4096 bits."))
        else:
            choices["key_bits"] = int(bits)
    if form.values["selector"]:
        try:
            choices["selector"] = dkim.normalize_selector(form.values["selector"])
        except v.ValidationError as error:
            page.refuse_into(form, error)
    return choices


async def domain_dkim(page: Page) -> Response:
    _ = page._
    domain_id = page.path_id()
    form = _empty_form()
    if page.request.method == "GET":
        return await _render(page, domain_id, form)
    async with page.store.read() as conn:
        domain = await domains.get(conn, page.scope, domain_id)
    choices = _read_choices(page, form)
    if not form.valid:
        return await _render(page, domain_id, form, status=400)
    previous = domain["dkim_key_name"] if domain["dkim_key"].strip() else ""
    try:
        async with page.store.read() as conn:
            selector = await dns_store.new_selector(conn, page.scope, domain_id,
                                                    choices["selector"], now())
        # A 4096-bit key takes a few tenths of a second: not on the event loop.
        pair = await asyncio.to_thread(dkim.generate_key, choices["algorithm"],
                                       choices["key_bits"])
        async with page.store.write() as conn:
            await dns_store.save_dkim_key(conn, page.admin.actor, page.scope, domain_id,
                                          selector, pair)
    except (StoreError, v.ValidationError) as error:
        page.refuse_into(form, error)
        return await _render(page, domain_id, form, status=400)
    name = v.display_domain(domain["name"])
    if previous:
        page.flash("warning", _(
            "A new key was made for %(name)s under the selector %(selector)s. Publish its record "
            "now, and keep the record of the old selector %(old)s until mail signed with it has "
            "been delivered (a few days); then retire it here and remove it from your zone.")
            % {"name": name, "selector": selector, "old": previous})
    else:
        page.flash("success", _("A DKIM key was made for %(name)s under the selector "
                                "%(selector)s: publish its record.")
                   % {"name": name, "selector": selector})
    return page.redirect(page.url("domain_dkim", pk=domain_id))


async def domain_dkim_retire(page: Page) -> Response:
    """Retire a selector a rotation replaced: its record leaves the page and the DNS check."""
    domain_id = page.path_id()
    form = _empty_form()
    retire_form = Form(values={"selector": page.form_data.text("selector")})
    try:
        async with page.store.write() as conn:
            domain = await dns_store.retire_dkim_selector(
                conn, page.admin.actor, page.scope, domain_id, retire_form.values["selector"])
    except (StoreError, v.ValidationError) as error:
        if isinstance(error, StoreError) and error.field is None:
            raise  # the domain itself is not there (or not the admin's): the usual 404
        page.refuse_into(retire_form, error)
        return await _render(page, domain_id, form, status=400, retire_form=retire_form)
    page.flash("success", page._(
        "The selector %(selector)s of %(name)s is retired: remove its record from your zone.")
        % {"selector": dkim.normalize_selector(retire_form.values["selector"]),
           "name": v.display_domain(domain["name"])})
    return page.redirect(page.url("domain_dkim", pk=domain_id))
