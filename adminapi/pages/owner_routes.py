"""Routes of the mailbox owners' pages under `/me/`, and of the admin pages that manage the
same things for a mailbox (forwarding, vacation reply, app passwords) or a domain (its
self-service switches)."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from adminapi.pages import (
    forwarding,
    mailbox_extras,
    owner_account,
    owner_extras,
    owner_twofactor,
)
from adminapi.pages.ownersession import ROUTE_PREFIX, OwnerView, owner_endpoint
from adminapi.pages.web import ROUTE_PREFIX as ADMIN_ROUTE_PREFIX
from adminapi.pages.web import View, page_endpoint

GET_POST = ["GET", "POST"]


def _owner(path: str, view: OwnerView, methods: list[str] | None = None, *,
           public: bool = False) -> Route:
    return Route(path, owner_endpoint(view, public=public), methods=methods or ["GET"],
                 name=ROUTE_PREFIX + view.__name__)


def _admin(path: str, view: View, methods: list[str]) -> Route:
    return Route(path, page_endpoint(view), methods=methods,
                 name=ADMIN_ROUTE_PREFIX + view.__name__)


def routes() -> list[BaseRoute]:
    return [
        _owner("/me/", owner_account.me_home),
        _owner("/me/login", owner_account.me_login, GET_POST, public=True),
        _owner("/me/login/code", owner_twofactor.me_login_code, GET_POST, public=True),
        _owner("/me/logout", owner_account.me_logout, ["POST"]),
        _owner("/me/language", owner_account.me_language, ["POST"], public=True),
        _owner("/me/password", owner_account.me_password, GET_POST),
        _owner("/me/forwarding", forwarding.me_forwarding, GET_POST),
        _owner("/me/vacation/", owner_extras.me_vacation, GET_POST),
        _owner("/me/vacation/delete", owner_extras.me_vacation_delete, ["POST"]),
        _owner("/me/app-passwords/", owner_extras.me_app_passwords, GET_POST),
        _owner("/me/app-passwords/{pk:int}/revoke", owner_extras.me_app_password_revoke,
               ["POST"]),
        _owner("/me/two-factor", owner_twofactor.me_two_factor, GET_POST),
        _owner("/me/two-factor/remove", owner_twofactor.me_two_factor_remove, ["POST"]),
        _owner("/me/two-factor/recovery-codes", owner_twofactor.me_recovery_codes, ["POST"]),
        _admin("/virtual-users/{pk:int}/forwarding", forwarding.mailbox_forwarding, GET_POST),
        _admin("/virtual-users/{pk:int}/vacation", mailbox_extras.mailbox_vacation, GET_POST),
        _admin("/virtual-users/{pk:int}/vacation/delete", mailbox_extras.mailbox_vacation_delete,
               ["POST"]),
        _admin("/virtual-users/{pk:int}/app-passwords", mailbox_extras.mailbox_app_passwords,
               GET_POST),
        _admin("/virtual-users/{pk:int}/app-passwords/{app_id:int}/revoke",
               mailbox_extras.mailbox_app_password_revoke, ["POST"]),
        _admin("/virtual-users/{pk:int}/two-factor/remove", owner_twofactor.mailbox_totp_remove,
               ["POST"]),
        _admin("/virtual-domains/{pk:int}/self-service", forwarding.domain_selfservice,
               GET_POST),
    ]
