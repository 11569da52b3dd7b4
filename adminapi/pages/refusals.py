"""The store's refusals in the admin's language, translated by their stable code.

The store's English sentence is free to be reworded: the pages never read it, except for a
refusal whose code has no entry here (shown as it is, in English).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from adminapi.pages.forms import N_, Gettext
from dinomail.store.errors import StoreError
from dinomail.validation import ValidationError


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refusal's message id; `sizes` names the params that are sizes in bytes."""

    message: str
    sizes: tuple[str, ...] = ()


REFUSALS: Mapping[str, Refusal] = {
    # Names and addresses (dinomail.validation).
    "domain_required": Refusal(N_("A domain name is required.")),
    "domain_invalid": Refusal(N_(
        "“%(value)s” is not a valid domain name: parts hold letters, digits and inner "
        "hyphens, separated by dots.")),
    "domain_too_long": Refusal(N_("A domain name is at most %(limit)s characters.")),
    "domain_not_full": Refusal(N_("“%(value)s” is not a full domain name, such as example.org.")),
    "domain_label_too_long": Refusal(
        N_("The part “%(label)s” is longer than %(limit)s characters.")),
    "domain_numeric": Refusal(N_("“%(value)s” is not a domain name (it ends in a number).")),
    "localpart_invisible_character": Refusal(
        N_("The part before @ contains an invisible or control character (%(char)s).")),
    "localpart_compatibility_character": Refusal(N_(
        "The part before @ contains a compatibility character (%(char)s), such as a "
        "full-width letter; type the ordinary character instead.")),
    "localpart_empty": Refusal(N_("The part before @ is empty.")),
    "localpart_too_long": Refusal(N_("The part before @ is at most %(limit)s bytes long.")),
    "localpart_invalid": Refusal(N_(
        "“%(value)s” is not a valid mailbox name: use letters, digits and . _ - + (no "
        "spaces, no two dots in a row, no dot at either end).")),
    "address_without_at": Refusal(N_("“%(value)s” is not an email address (no @).")),
    "address_too_long": Refusal(N_("An email address is at most %(limit)s bytes long.")),
    "address_in_other_domain": Refusal(N_(
        "The domain of %(address)s (%(address_domain)s) is not the same as the domain "
        "%(domain)s")),
    "not_whole_number": Refusal(N_("Enter a whole number of bytes.")),
    "negative_number": Refusal(N_("Must be 0 (unlimited) or more.")),
    "number_too_large": Refusal(N_("This number is too large.")),
    "not_text": Refusal(N_("Must be text.")),
    "text_too_long": Refusal(N_("At most %(limit)s characters.")),
    "control_characters": Refusal(N_("Must not contain control characters.")),
    "not_boolean": Refusal(N_("Must be true or false.")),
    "not_an_id": Refusal(N_("Must be the id of an existing object.")),
    "username_invalid": Refusal(N_("Use 1 to 150 letters, digits or @ . + - _ characters.")),
    "field_unknown": Refusal(N_("This field cannot be set here.")),
    "field_required": Refusal(N_("This field is required.")),
    # What exists, and who may see it.
    "not_found": Refusal(N_("No such object.")),
    "domain_not_found": Refusal(N_("No such domain among yours.")),
    "domain_not_yours": Refusal(N_("%(name)s is not a domain you manage.")),
    "domain_id_not_found": Refusal(N_("No domain has the id %(id)s.")),
    "mailbox_not_found": Refusal(N_("No such mailbox among yours.")),
    "admin_not_found": Refusal(N_("No such admin.")),
    "write_conflict": Refusal(
        N_("This conflicts with data written at the same time; try again.")),
    # Domains and alias domains.
    "domain_exists": Refusal(N_("The domain %(name)s already exists.")),
    "name_is_alias_domain": Refusal(N_("%(name)s is already an alias domain.")),
    "name_is_mail_domain": Refusal(N_("%(name)s is already a mail domain.")),
    "alias_domain_exists": Refusal(N_("The alias domain %(name)s already exists.")),
    "domain_rename_with_addresses": Refusal(
        N_("A domain with mailboxes or aliases cannot be renamed.")),
    "superadmin_only_create_domain": Refusal(N_("Only a superadmin can create a domain.")),
    "superadmin_only_delete_domain": Refusal(N_("Only a superadmin can delete a domain.")),
    "superadmin_only_domain_limits": Refusal(
        N_("Only a superadmin can change a domain's name or limits.")),
    "superadmin_only_alias_domain": Refusal(
        N_("Only a superadmin can create or rename an alias domain.")),
    # Mailboxes, aliases and the domain's limits.
    "mailbox_exists": Refusal(N_("The mailbox %(email)s already exists.")),
    "alias_exists": Refusal(N_("The alias %(source)s → %(destination)s already exists.")),
    "alias_on_mailbox": Refusal(
        N_("%(source)s is a mailbox: an alias on its address would take its mail.")),
    "alias_to_itself": Refusal(N_("An alias cannot deliver to its own address.")),
    "too_many_mailboxes": Refusal(
        N_("The domain %(name)s already has its maximum of %(limit)s mailboxes.")),
    "too_many_aliases": Refusal(N_("The domain %(name)s allows at most %(limit)s aliases.")),
    "quota_out_of_range": Refusal(
        N_("In %(name)s, the quota must be more than 0 and at most %(cap)s."), ("cap",)),
    "quota_required": Refusal(
        N_("%(name)s has a total quota, so each mailbox needs a quota (not unlimited).")),
    "total_quota_exceeded": Refusal(N_(
        "%(name)s would exceed its total quota of %(total)s (%(others)s already given to "
        "other mailboxes)."), ("total", "others")),
    # Passwords.
    "password_required": Refusal(N_("A new password is required.")),
    "password_too_short": Refusal(N_("At least %(limit)s characters.")),
    "password_bad_characters": Refusal(
        N_("Must not contain tabs, line breaks or NUL characters.")),
    "password_is_address": Refusal(
        N_("The password must not be the mailbox's address or its name.")),
    "password_common": Refusal(N_("This is one of the commonest passwords; choose another.")),
    "admin_exists": Refusal(N_("The admin %(username)s already exists.")),
    # Sending limits.
    "superadmin_only_send_limits": Refusal(N_("Only a superadmin can change sending limits.")),
    "superadmin_only_reset_counts": Refusal(N_("Only a superadmin can reset sending counts.")),
    "policy_reply_invalid": Refusal(N_(
        "Enter a Postfix action: DEFER_IF_PERMIT, DEFER, REJECT or a 4xx/5xx code, then "
        "an optional status and text (ASCII), as in “452 4.2.2 Mailbox full”.")),
    "policy_status_mismatch": Refusal(
        N_("The status %(status)s does not match a %(reply_class)sxx reply.")),
    # DNS, client settings, DKIM and MTA-STS.
    "port_invalid": Refusal(
        N_("Enter a port number from 1 to 65535, or 0 to turn the mode off.")),
    "protocol_port_required": Refusal(
        N_("%(protocol)s must be offered with implicit TLS or STARTTLS (or both).")),
    "dkim_selector_required": Refusal(N_("A selector is required, such as dm202611.")),
    "dkim_selector_too_long": Refusal(N_("A selector is at most %(limit)s characters.")),
    "dkim_selector_invalid": Refusal(
        N_("A selector holds letters, digits and inner hyphens (dots between parts).")),
    "dkim_private_key_missing": Refusal(
        N_("DinoMail holds no private key for the domain's current DKIM key.")),
    "mtasts_mode_invalid": Refusal(N_("Choose one of %(modes)s.")),
    "mtasts_max_age_invalid": Refusal(N_("Enter a number of seconds from 0 to %(limit)s.")),
    "mtasts_pattern_invalid": Refusal(N_(
        "Each pattern must be a host name, as in mail.example.org or *.example.org.")),
    "mtasts_patterns_invalid": Refusal(N_("Enter a list of host names.")),
    "mtasts_too_many_patterns": Refusal(N_("At most %(limit)s patterns.")),
    "mtasts_mx_required": Refusal(N_(
        "Name the MX host(s) senders may deliver to (no MX host is configured for the "
        "domain, nor MX_HOST).")),
    "mtasts_not_published": Refusal(N_("The domain publishes no MTA-STS policy.")),
    # Admins (the Admins page and the account page).
    "own_superadmin_rights": Refusal(N_("You cannot remove your own superadmin rights.")),
    "own_account_deactivation": Refusal(N_("You cannot deactivate your own account.")),
    "own_account_read_only": Refusal(N_("You cannot make your own account read-only.")),
    "own_account_deletion": Refusal(N_("You cannot delete your own account.")),
    "own_password_reset": Refusal(N_(
        "Change your own password on your account page, with the current one.")),
    "username_unchangeable": Refusal(
        N_("A username cannot be changed; create another admin instead.")),
    "language_unknown": Refusal(N_("Choose one of DinoMail's languages.")),
    "wrong_current_password": Refusal(N_("The current password is wrong.")),
    "not_current_password": Refusal(N_("This is not your current password.")),
    # Second factors (admins and mailbox owners).
    "wrong_code": Refusal(N_("This code is wrong or expired. Type the code your app shows now.")),
    "totp_enrolled": Refusal(N_("An authenticator app is already set up; remove it first.")),
    "totp_not_started": Refusal(N_("The set-up of the app was not started; start it again.")),
    "totp_not_enrolled": Refusal(N_(
        "Set up an authenticator app first: recovery codes come with it.")),
    "passkey_name_exists": Refusal(N_("You already have a passkey named %(name)s.")),
    "too_many_passkeys": Refusal(N_(
        "You already have the most passkeys an admin may have (%(limit)s).")),
    "passkey_exists": Refusal(N_("This passkey is already registered.")),
    # DKIM rotation.
    "dkim_selector_too_long_for_domain": Refusal(
        N_("The selector is too long for this domain's DNS name.")),
    "dkim_selector_in_use": Refusal(N_(
        "The domain publishes its current key under the selector %(selector)s: a new key "
        "needs a new selector, so that the old record stays published.")),
    "dkim_selector_retiring": Refusal(N_(
        "The selector %(selector)s still publishes a previous key of the domain: retire it "
        "first, or choose another selector.")),
    "dkim_selector_current": Refusal(N_(
        "%(selector)s is the domain's current selector: only the selector of a replaced key "
        "can be retired.")),
    "dkim_selector_unknown": Refusal(N_("The domain has no retiring selector %(selector)s.")),
    # Forwarding, vacation replies, app passwords.
    "forwarding_to_itself": Refusal(N_(
        "%(email)s cannot forward to itself: tick “Keep a copy” instead.")),
    "forwarding_too_many": Refusal(N_("Forwarding goes to at most %(limit)s addresses.")),
    "forwarding_external_forbidden": Refusal(N_(
        "%(domain)s does not allow forwarding outside this server's domains (%(address)s).")),
    "addresses_invalid": Refusal(N_("Enter email addresses, one per line.")),
    "day_invalid": Refusal(N_("Enter a day, as 2025-07-14.")),
    "year_out_of_range": Refusal(N_("Enter a day between the years 1000 and 9999.")),
    "days_invalid": Refusal(N_("Enter a whole number of days.")),
    "days_out_of_range": Refusal(N_("Enter a number of days from %(low)s to %(high)s.")),
    "vacation_body_required": Refusal(N_("A message is needed to turn the reply on.")),
    "ends_before_starts": Refusal(N_("The last day cannot come before the first.")),
    "app_password_exists": Refusal(N_("The app password %(name)s already exists.")),
    "app_password_limit": Refusal(N_("A mailbox has at most %(limit)s app passwords.")),
    "app_password_not_found": Refusal(N_("No such app password.")),
    "protocols_invalid": Refusal(N_("Choose at least one.")),
    "protocols_required": Refusal(N_("Choose at least one.")),
}


def translate_refusal(
    error: StoreError | ValidationError, _: Gettext, size: Callable[[int], str]
) -> str:
    """The refusal in the admin's language, by its code; as it is when the code is unknown."""
    refusal = REFUSALS.get(error.code)
    if refusal is None:
        return error.message
    values = {
        name: size(int(str(value))) if name in refusal.sizes else value
        for name, value in error.params.items()
    }
    return _(refusal.message) % values

