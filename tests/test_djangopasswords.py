"""Django 3.2's password hashes, as the original product's admin accounts hold them: the vectors
of Django's own test suite (tests/auth_tests/test_hashers.py), real hashes of the fixture
databases, and Argon2/bcrypt hashes written in Django's formats."""

from __future__ import annotations

import hashlib

import bcrypt
import pytest
from argon2 import PasswordHasher

from dinomail import djangopasswords
from tests.support.original_db import ADMINS, POSTGRESQL_DUMP, SQLITE_DUMP

# (password, hash, Django's algorithm) from Django's test suite.
DJANGO_VECTORS = [
    ("lètmein", "pbkdf2_sha256$20000$seasalt$oBSd886ysm3AqYun62DOdin8YcfbU1z9cksZSuLP9r0=",
     "pbkdf2_sha256"),
    ("lètmein", "pbkdf2_sha1$20000$seasalt2$pJt86NmjAweBY1StBvxCu7l1o9o=", "pbkdf2_sha1"),
    ("lètmein", "sha1$seasalt$cff36ea83f5706ce9aa7454e63e431fc726b2dc8", "sha1"),
    ("lètmein", "md5$seasalt$3f86d0d3d465b7b458c231bf3555c0e3", "md5"),
    ("lètmein", "88a434c88cca4e900f7874cd98123f43", "unsalted_md5"),
    ("lètmein", "md5$$88a434c88cca4e900f7874cd98123f43", "unsalted_md5"),
    ("lètmein", "sha1$$6d138ca3ae545631b3abd71a4f076ce759c5700b", "unsalted_sha1"),
    ("lètmei", "crypt$$ab1Hv2Lg7ltQo", "crypt"),
]


def _django_argon2(password: str) -> str:
    # Django's Argon2PasswordHasher: "argon2" + argon2-cffi's string.
    return "argon2" + PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(password)


def _django_bcrypt_sha256(password: str) -> str:
    digest = hashlib.sha256(password.encode()).hexdigest().encode()
    return "bcrypt_sha256$" + bcrypt.hashpw(digest, bcrypt.gensalt(4)).decode()


def _django_bcrypt(password: str) -> str:
    return "bcrypt$" + bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()


@pytest.mark.parametrize(("password", "encoded", "algorithm"), DJANGO_VECTORS)
def test_django_test_suite_vectors(password: str, encoded: str, algorithm: str) -> None:
    assert djangopasswords.algorithm_of(encoded) == algorithm
    assert djangopasswords.verify(encoded, password)
    assert not djangopasswords.verify(encoded, password + "z")
    assert not djangopasswords.verify(encoded, "")


@pytest.mark.parametrize("make", [_django_argon2, _django_bcrypt_sha256, _django_bcrypt])
def test_argon2_and_bcrypt_in_djangos_formats(make) -> None:  # type: ignore[no-untyped-def]
    password = "lètmein"
    encoded = make(password)
    assert djangopasswords.is_django_hash(encoded)
    assert djangopasswords.verify(encoded, password)
    assert not djangopasswords.verify(encoded, "lètmeinz")


def test_bcrypt_sha256_has_no_72_byte_limit() -> None:
    long = "x" * 100
    encoded = _django_bcrypt_sha256(long)
    assert djangopasswords.verify(encoded, long)
    assert not djangopasswords.verify(encoded, long[:72])


def test_the_fixture_admins_django_hashes() -> None:
    for dump in (POSTGRESQL_DUMP.read_text(), SQLITE_DUMP.read_text()):
        for username, password in ADMINS.items():
            line = next(line for line in dump.splitlines()
                        if f"{username}" in line and "pbkdf2_sha256$" in line)
            encoded = next(part for part in line.replace("'", "\t").split("\t")
                           if part.startswith("pbkdf2_sha256$"))
            assert djangopasswords.verify(encoded, password)
            assert not djangopasswords.verify(encoded, password.lower())


@pytest.mark.parametrize("encoded", [
    "", "!", "!UwcK7b3hWnS0fUJ6tgAW0hLTk0RJ3dNnTNbMDeJM",  # Django's unusable passwords
    "pbkdf2_sha256$x$salt$hash", "pbkdf2_sha256$1", "bcrypt$notbcrypt", "crypt$$",
    "lolcat$salt$hash", "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaA",
])
def test_unusable_and_malformed_hashes_never_match(encoded: str) -> None:
    assert not djangopasswords.verify(encoded, "")
    assert not djangopasswords.verify(encoded, "lètmein")


async def test_every_django_hasher_logs_an_admin_in_once_then_argon2(  # type: ignore[no-untyped-def]
    store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlalchemy as sa

    from tests.support.adminapi import fast_admin_hashing

    fast_admin_hashing(monkeypatch)

    from dinomail.schema import admin
    from dinomail.store import admins

    hashes = {
        **{algorithm: (password, encoded) for password, encoded, algorithm in DJANGO_VECTORS},
        "argon2": ("lètmein", _django_argon2("lètmein")),
        "bcrypt_sha256": ("lètmein", _django_bcrypt_sha256("lètmein")),
        "bcrypt": ("lètmein", _django_bcrypt("lètmein")),
        # A Dovecot-scheme hash (an admin imported from PostfixAdmin) that is also 32
        # characters without a `$`, the shape of Django's unsalted MD5.
        "{PLAIN} of 25 characters": ("x" * 25, "{PLAIN}" + "x" * 25),
    }
    async with store.write() as conn:
        account = await admins.create(conn, "test", username="old", password="temporary-1")
    for algorithm, (password, encoded) in hashes.items():
        async with store.write() as conn:
            await conn.execute(admin.update().where(admin.c.id == account["id"]).values(
                password=encoded))
        async with store.read() as conn:
            assert await admins.authenticate(conn, "old", password + "!") is None, algorithm
            assert await admins.authenticate(conn, "old", password) is not None, algorithm
            await conn.commit()
            stored = await conn.scalar(sa.select(admin.c.password).where(
                admin.c.id == account["id"]))
        assert stored.startswith("$argon2id$"), algorithm
        async with store.read() as conn:
            assert await admins.authenticate(conn, "old", password) is not None, algorithm
