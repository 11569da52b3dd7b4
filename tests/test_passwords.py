"""Dovecot password schemes: hashes made here pass `doveadm pw -t`, and hashes made by
`doveadm pw -s` pass verify_password.

The doveadm tests run only where /usr/bin/doveadm is installed; the fixed vectors below were
printed by `doveadm pw` (Dovecot 2.3.19.1) once and run everywhere.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from dinomail.passwords import (
    DEFAULT_SCHEME,
    SCHEMES,
    WEAK_SCHEMES,
    PasswordSchemeError,
    UnknownSchemeError,
    hash_password,
    scheme_from_setting,
    split_stored,
    verify_password,
)
from dinomail.passwords.argon import ARGON2I, ARGON2ID
from tests.support.password_vectors import DOVEADM_SCHEMES, DOVEADM_VECTORS, PASSWORD, USER, WRONG

DOVEADM = Path("/usr/bin/doveadm")
needs_doveadm = pytest.mark.skipif(not DOVEADM.exists(), reason="doveadm is not installed")


# Costs low enough for a test run; the defaults are exercised by test_defaults_*.
CHEAP_ROUNDS = {
    "CRYPT": 4, "BLF-CRYPT": 4, "SHA256-CRYPT": 1000, "SHA512-CRYPT": 1000, "PBKDF2": 100,
}


def cheap_hash(plain: str, scheme: str) -> str:
    return hash_password(plain, scheme, user=USER, rounds=CHEAP_ROUNDS.get(scheme))


def doveadm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DOVEADM), "pw", *args], capture_output=True, text=True, timeout=60, check=False
    )


# -- the scheme list ----------------------------------------------------------------------------


def test_every_doveadm_scheme_is_known_plus_the_windows_ones() -> None:
    assert set(SCHEMES) == {*DOVEADM_SCHEMES, "LANMAN", "NTLM"}
    assert len(SCHEMES) == len(set(SCHEMES))
    assert DEFAULT_SCHEME == "SHA512-CRYPT" and DEFAULT_SCHEME not in WEAK_SCHEMES


def test_weak_schemes_are_pinned() -> None:
    # Dovecot 2.4's weak list (MD5, MD5-CRYPT, SMD5, HMAC-MD5, PLAIN-MD4, PLAIN-MD5, LDAP-MD5,
    # DES-CRYPT) plus: plaintext, unsalted single digests, mechanism secrets, OTP, Windows.
    dovecot_24 = {
        "MD5", "MD5-CRYPT", "SMD5", "HMAC-MD5", "PLAIN-MD4", "PLAIN-MD5", "LDAP-MD5", "DES-CRYPT",
    }
    assert dovecot_24 <= WEAK_SCHEMES
    assert WEAK_SCHEMES - dovecot_24 == {
        "PLAIN", "CLEAR", "CLEARTEXT", "PLAIN-TRUNC", "SHA", "SHA1", "SHA256", "SHA512",
        "CRAM-MD5", "DIGEST-MD5", "OTP", "LANMAN", "NTLM",
    }
    assert set(SCHEMES) - WEAK_SCHEMES == {
        "CRYPT", "BLF-CRYPT", "SHA256-CRYPT", "SHA512-CRYPT", "ARGON2I", "ARGON2ID", "PBKDF2",
        "SCRAM-SHA-1", "SCRAM-SHA-256", "SSHA", "SSHA256", "SSHA512",
    }


# -- fixed vectors from doveadm -----------------------------------------------------------------


@pytest.mark.parametrize("stored", DOVEADM_VECTORS, ids=lambda stored: stored.split("}")[0][1:])
def test_doveadm_vectors(stored: str) -> None:
    assert verify_password(PASSWORD, stored, user=USER) is True
    assert verify_password(WRONG, stored, user=USER) is False


def test_doveadm_vectors_cover_every_listed_scheme() -> None:
    covered = {stored[1:].split("}")[0].split(".")[0] for stored in DOVEADM_VECTORS}
    # doveadm's own PLAIN-TRUNC output fails its own check; see test_plain_trunc_*.
    assert covered == set(DOVEADM_SCHEMES) - {"PLAIN-TRUNC"}


CRAM_MD5_OF_SECRET = "cd3ba7deaad6e5ca23448ba42e379747a9e0f7f1fbc00c8a81bbaac395731b56"
BLF_100_X = "{BLF-CRYPT}$2y$05$HY0GRw4czJm9rSY8ZIG9T.fb6o9XV3SI3Ll.ATeihslWlRH/wJrHq"

KNOWN_VECTORS = [
    # (password, a wrong one, stored)
    # Published: NTLM and LM of "password" and of the empty password. LM ignores case.
    ("password", "passwort", "{NTLM}8846f7eaee8fb117ad06bdd830b7586c"),
    ("password", "Password", "{NTLM}8846F7EAEE8FB117AD06BDD830B7586C"),
    ("password", "passwort", "{LANMAN}e52cac67419a9a224a3b108f3fa6cb6d"),
    ("PassWord", "passwort", "{LANMAN}e52cac67419a9a224a3b108f3fa6cb6d"),
    ("", " ", "{NTLM}31d6cfe0d16ae931b73c59d7e0c089c0"),
    ("", " ", "{LANMAN}aad3b435b51404eeaad3b435b51404ee"),
    # RFC 2289 appendix C, in Dovecot's stored form.
    ("This is a test.", "This is a test!", "{OTP}md4 99 TeSt c5e612776e6c237a"),
    ("AbCdEfGhIjK", "abcdefghijk", "{OTP}md5 1 alpha1 7cd34c1040add14b"),
    ("OTP's are good", "OTPs are good", "{OTP}sha1 99 correct 4F296A74FE1567EC"),
    # Printed by doveadm 2.3.19.1.
    ("secret", "Secret", "{PLAIN-MD4}67d3dafef63ff00603aeef3769cfbf0d"),
    ("secret", "Secret", "{CRAM-MD5}" + CRAM_MD5_OF_SECRET),
    # crypt_blowfish reads 72 bytes at most, DES 8.
    ("x" * 100, "x" * 71, BLF_100_X),
    ("x" * 72, "x" * 71 + "y", BLF_100_X),
    ("08/15!test~4711", "08/15!t", "{CRYPT}JBOZ0DgmtucwE"),
    ("08/15!te", "08/15!tE", "{CRYPT}JBOZ0DgmtucwE"),
]


@pytest.mark.parametrize(("plain", "wrong", "stored"), KNOWN_VECTORS)
def test_known_vectors(plain: str, wrong: str, stored: str) -> None:
    assert verify_password(plain, stored) is True
    assert verify_password(wrong, stored) is False


def test_windows_hashes_are_made_only_when_asked_for() -> None:
    assert hash_password("password", "NTLM") == "{NTLM}8846f7eaee8fb117ad06bdd830b7586c"
    assert hash_password("password", "lanman") == "{LANMAN}e52cac67419a9a224a3b108f3fa6cb6d"


# -- every scheme round trips -------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_round_trip(scheme: str) -> None:
    stored = cheap_hash(PASSWORD, scheme)
    assert stored.startswith("{" + scheme + "}")
    assert verify_password(PASSWORD, stored, user=USER) is True
    assert verify_password(WRONG, stored, user=USER) is False
    assert verify_password("", stored, user=USER) is False


SALTED = [
    scheme for scheme in SCHEMES
    if scheme not in {
        "PLAIN", "CLEAR", "CLEARTEXT", "PLAIN-TRUNC", "SHA", "SHA1", "SHA256", "SHA512",
        "PLAIN-MD5", "LDAP-MD5", "PLAIN-MD4", "DIGEST-MD5", "CRAM-MD5", "HMAC-MD5", "LANMAN",
        "NTLM",
    }
]


@pytest.mark.parametrize("scheme", SALTED)
def test_two_hashes_have_different_salts(scheme: str) -> None:
    assert cheap_hash(PASSWORD, scheme) != cheap_hash(PASSWORD, scheme)


def test_empty_and_long_passwords() -> None:
    for scheme in ("SHA512-CRYPT", "SSHA512", "SCRAM-SHA-256", "PLAIN-TRUNC", "CRAM-MD5"):
        for plain in ("", "long " * 200):
            stored = cheap_hash(plain, scheme)
            assert verify_password(plain, stored) is True
            assert verify_password(plain + "x", stored) is False


# -- defaults and rounds ------------------------------------------------------------------------


def test_defaults_match_doveadm() -> None:
    assert hash_password(PASSWORD, DEFAULT_SCHEME).startswith("{SHA512-CRYPT}$6$")
    assert "rounds=" not in hash_password(PASSWORD, "SHA256-CRYPT")
    assert hash_password(PASSWORD, "BLF-CRYPT").startswith("{BLF-CRYPT}$2y$05$")
    assert hash_password(PASSWORD, "CRYPT").startswith("{CRYPT}$2y$05$")
    assert hash_password(PASSWORD, "ARGON2I").startswith("{ARGON2I}$argon2i$v=19$m=32768,t=4,p=1$")
    assert hash_password(PASSWORD, "ARGON2ID").startswith(
        "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$"
    )
    assert hash_password(PASSWORD, "PBKDF2").split("$")[3] == "5000"
    assert hash_password(PASSWORD, "SCRAM-SHA-256").startswith("{SCRAM-SHA-256}4096,")
    assert hash_password(PASSWORD, "OTP").startswith("{OTP}sha1 1024 ")
    salt = hash_password(PASSWORD, "SHA512-CRYPT").split("$")[2]
    assert len(salt) == 16


def test_rounds() -> None:
    assert "$6$rounds=1000$" in hash_password(PASSWORD, "SHA512-CRYPT", rounds=1000)
    assert "$5$rounds=2000$" in hash_password(PASSWORD, "SHA256-CRYPT", rounds=2000)
    assert "rounds=" not in hash_password(PASSWORD, "SHA512-CRYPT", rounds=5000)
    assert hash_password(PASSWORD, "BLF-CRYPT", rounds=4).startswith("{BLF-CRYPT}$2y$04$")
    assert hash_password(PASSWORD, "PBKDF2", rounds=7).split("$")[3] == "7"
    assert hash_password(PASSWORD, "SCRAM-SHA-1", rounds=5000).startswith("{SCRAM-SHA-1}5000,")
    assert "$m=32768,t=3,p=1$" in hash_password(PASSWORD, "ARGON2I", rounds=3)
    for scheme, rounds in CHEAP_ROUNDS.items():
        assert verify_password(PASSWORD, hash_password(PASSWORD, scheme, rounds=rounds))


def test_argon2_rounds_pick_libsodium_memory_presets() -> None:
    # What `doveadm pw -s ARGON2ID -r N` printed: t and m (KiB) by N.
    assert ARGON2ID.costs(1) == (3, 65536)
    assert ARGON2ID.costs(2) == (3, 65536)
    assert ARGON2ID.costs(3) == (3, 262144)
    assert ARGON2ID.costs(4) == (4, 1048576)
    assert ARGON2I.costs(3) == (3, 32768)
    assert ARGON2I.costs(5) == (5, 32768)
    assert ARGON2I.costs(6) == (6, 131072)
    assert ARGON2I.costs(8) == (8, 524288)


@pytest.mark.parametrize(
    ("scheme", "rounds"),
    [
        ("SHA512-CRYPT", 999), ("SHA512-CRYPT", 1_000_000_000), ("BLF-CRYPT", 3),
        ("BLF-CRYPT", 32), ("CRYPT", 0), ("SCRAM-SHA-256", 4095), ("PBKDF2", 0), ("ARGON2I", 2),
        ("SHA", 5), ("PLAIN", 1), ("DES-CRYPT", 25), ("BLF-CRYPT", True), ("BLF-CRYPT", 4.0),
    ],
)
def test_bad_rounds(scheme: str, rounds: int) -> None:
    with pytest.raises(PasswordSchemeError) as caught:
        hash_password(PASSWORD, scheme, rounds=rounds)
    assert "\n" not in str(caught.value)


# -- names, suffixes and encodings --------------------------------------------------------------


def test_names_are_case_insensitive_and_printed_upper_case() -> None:
    assert hash_password("secret", "sha") == "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ="
    assert hash_password("secret", "Sha1") == "{SHA1}5en6G6MezRroT3XKqkdPOmY/BfQ="
    assert verify_password("secret", "{sha}5en6G6MezRroT3XKqkdPOmY/BfQ=")
    assert verify_password(PASSWORD, DOVEADM_VECTORS[2].replace("{BLF-CRYPT}", "{blf-Crypt}"))


def test_suffixes() -> None:
    assert hash_password("secret", "sha.hex") == "{SHA.HEX}e5e9fa1ba31ecd1ae84f75caaa474f3a663f05f4"
    assert hash_password("secret", "SHA.b64") == "{SHA.B64}5en6G6MezRroT3XKqkdPOmY/BfQ="
    assert hash_password("secret", "SHA.Base64") == "{SHA.BASE64}5en6G6MezRroT3XKqkdPOmY/BfQ="
    assert hash_password("secret", "PLAIN.b64") == "{PLAIN.B64}c2VjcmV0"
    assert hash_password("secret", "plain-md5.b64") == "{PLAIN-MD5.B64}Xr4ilOzQ4PCOq3aQ0qbuaQ=="
    for scheme in ("SSHA.hex", "SSHA512.b64", "SHA512-CRYPT.b64", "SCRAM-SHA-1.hex"):
        stored = cheap_hash("secret", scheme)
        assert verify_password("secret", stored) and not verify_password("Secret", stored)
    with pytest.raises(UnknownSchemeError):
        hash_password("secret", "SHA.foo")
    with pytest.raises(UnknownSchemeError):
        verify_password("secret", "{SHA.foo}5en6G6MezRroT3XKqkdPOmY/BfQ=")


def test_fixed_length_schemes_guess_hex_or_base64() -> None:
    # As Dovecot: twice the raw length means hex, anything else base64, unless a suffix says.
    for stored in (
        "{SHA}e5e9fa1ba31ecd1ae84f75caaa474f3a663f05f4",
        "{SHA}E5E9FA1BA31ECD1AE84F75CAAA474F3A663F05F4",
        "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=",
        "{SHA} 5en6G6MezRroT3XKqkdPOmY/BfQ= ",
        "{PLAIN-MD5}Xr4ilOzQ4PCOq3aQ0qbuaQ==",
        "{LDAP-MD5}5ebe2294ecd0e0f08eab7690d2a6ee69",
        "{CRAM-MD5.b64}zTun3qrW5cojRIukLjeXR6ng9/H7wAyKgbuqw5VzG1Y=",
    ):
        assert verify_password("secret", stored) is True, stored
        assert verify_password("Secret", stored) is False, stored


def test_md5_checks_md5_crypt_and_plain_md5() -> None:
    for stored in (
        "{MD5}$1$btcY1mht$wQqHw3mg3KuIFdJN0rwq3/",
        "{MD5}5ebe2294ecd0e0f08eab7690d2a6ee69",
        "{MD5}Xr4ilOzQ4PCOq3aQ0qbuaQ==",
    ):
        assert verify_password("secret", stored) is True
        assert verify_password("Secret", stored) is False
    assert hash_password("secret", "MD5").startswith("{MD5}$1$")


def test_a_bare_md5_crypt_string_is_md5_crypt() -> None:
    assert split_stored("$1$btcY1mht$wQqHw3mg3KuIFdJN0rwq3/$x") == (
        "MD5-CRYPT", "$1$btcY1mht$wQqHw3mg3KuIFdJN0rwq3/"
    )
    assert verify_password("secret", "$1$btcY1mht$wQqHw3mg3KuIFdJN0rwq3/") is True
    assert verify_password("Secret", "$1$btcY1mht$wQqHw3mg3KuIFdJN0rwq3/") is False


def test_crypt_names_check_every_crypt_format() -> None:
    # Dovecot checks CRYPT, DES-CRYPT and SHA*-CRYPT with crypt(), which reads the format.
    md5_crypt = "$1$btcY1mht$wQqHw3mg3KuIFdJN0rwq3/"
    sha512_crypt = (
        "$6$.9HZrcB7Rlw7M2uo$Y6FN48XMSW2izqgf7XOxpX44mNyUn5EGl3IDIHndPNyl4j44eJPpI3qmE"
        ".xwOxUKRJ5.yxYRBhpOsBanaVLww1"
    )
    bcrypt = "$2y$05$OHltdIUHU6928Dq1Uf/l.OH3tqT6EpJNSD4juEXldG.vg1xflzuPC"
    des = "nWw2t7IOD9lp2"
    for name in ("CRYPT", "DES-CRYPT", "SHA256-CRYPT", "SHA512-CRYPT"):
        for crypted in (md5_crypt, sha512_crypt, bcrypt, des):
            assert verify_password("secret", f"{{{name}}}{crypted}") is True
            assert verify_password("secreT", f"{{{name}}}{crypted}") is False
    for variant in ("$2a$", "$2b$", "$2x$"):
        assert verify_password("secret", "{BLF-CRYPT}" + bcrypt.replace("$2y$", variant))


def test_locked_crypt_fields_never_match() -> None:
    for stored in ("{CRYPT}", "{CRYPT}!", "{SHA512-CRYPT}*", "{BLF-CRYPT}!$2y$05$x"):
        assert verify_password("", stored) is False
        assert verify_password("secret", stored) is False


def test_plain_trunc_compares_the_stored_prefix() -> None:
    # The cases `doveadm pw -t` accepted and refused.
    assert verify_password("secret", "{PLAIN-TRUNC}6-secret")
    assert verify_password("secret", "{PLAIN-TRUNC}3-sec")
    assert verify_password("secretly", "{PLAIN-TRUNC}6-secret")
    assert verify_password("sec", "{PLAIN-TRUNC}4-sec")
    assert verify_password("secret", "{PLAIN-TRUNC}3-secret")
    assert not verify_password("se", "{PLAIN-TRUNC}3-sec")
    assert not verify_password("secreT", "{PLAIN-TRUNC}6-secret")
    # A new hash says nothing was cut: only the exact password matches, even the empty one.
    assert hash_password("pässwörd", "PLAIN-TRUNC") == "{PLAIN-TRUNC}11-pässwörd"
    assert not verify_password("pässwörd!", hash_password("pässwörd", "PLAIN-TRUNC"))
    assert not verify_password("x", hash_password("", "PLAIN-TRUNC"))


def test_plain_trunc_without_a_length_is_malformed() -> None:
    # `doveadm pw -s PLAIN-TRUNC` prints this, and `doveadm pw -t` then rejects it.
    with pytest.raises(PasswordSchemeError, match="PLAIN-TRUNC"):
        verify_password("secret", "{PLAIN-TRUNC}secret")


def test_digest_md5_needs_the_user() -> None:
    assert hash_password("secret", "DIGEST-MD5", user="user@example.com") == (
        "{DIGEST-MD5}30969131580e626606ce70ceaab77719"
    )
    # The realm is after the last '@'; without one it is empty.
    stored = hash_password("secret", "DIGEST-MD5", user="a@b@c")
    assert stored == "{DIGEST-MD5}" + hashlib.md5(b"a@b:c:secret").hexdigest()
    assert verify_password("secret", stored, user="a@b@c")
    stored = hash_password("secret", "DIGEST-MD5", user="bob")
    assert stored == "{DIGEST-MD5}" + hashlib.md5(b"bob::secret").hexdigest()
    assert not verify_password(
        "secret", "{DIGEST-MD5}30969131580e626606ce70ceaab77719", user="other@example.com"
    )
    with pytest.raises(PasswordSchemeError, match="DIGEST-MD5"):
        hash_password("secret", "DIGEST-MD5")
    with pytest.raises(PasswordSchemeError, match="DIGEST-MD5"):
        verify_password("secret", "{DIGEST-MD5}30969131580e626606ce70ceaab77719")


# -- errors -------------------------------------------------------------------------------------


MALFORMED = [
    "5en6G6MezRroT3XKqkdPOmY/BfQ=",
    "{SHA5en6G6MezRroT3XKqkdPOmY/BfQ=",
    "{SHA}abc",
    "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ",
    "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ==",
    "{SHA}5en6G6MezRroT3XKqkdPOmY_BfQ=",
    "{SHA.b64}e5e9fa1ba31ecd1ae84f75caaa474f3a663f05f4",
    "{SHA.hex}5en6G6MezRroT3XKqkdPOmY/BfQ=",
    "{SSHA}zWIUHgyVgOxAMSLjJzyjVoul",
    "{SHA512-CRYPT}garbage",
    "{SHA512-CRYPT}$6$abc",
    "{CRYPT}$y$j9T$abc$def",
    "{BLF-CRYPT}$1$btcY1mht$wQqHw3mg3KuIFdJN0rwq3/",
    "{BLF-CRYPT}$2y$05$short",
    "{MD5-CRYPT}nWw2t7IOD9lp2",
    "{MD5}nWw2t7IOD9lp2",
    "{PBKDF2}$1$salt$5000$tooshort",
    "{PBKDF2}salt$5000$ab354d253e1ed82f84ed0bccb104573e136c8845",
    "{SCRAM-SHA-1}4096,F4PmEomLOlhUJ3pDiCOiXA==,S8VQlJ2gcN57QFZzTx7bXS7HYnc=",
    "{SCRAM-SHA-1}100,F4PmEomLOlhUJ3pDiCOiXA==,S8VQlJ2gcN57QFZzTx7bXS7HYnc=,Js3TshEO04N2rSMkcxy+W0xKs/8=",
    "{ARGON2ID}garbage",
    "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$nope",
    "{OTP}sha256 1024 seed 0011223344556677",
    "{OTP}sha1 1024 seed 00112233",
]


@pytest.mark.parametrize("stored", MALFORMED)
def test_malformed_hashes_raise(stored: str) -> None:
    with pytest.raises(PasswordSchemeError) as caught:
        verify_password("secret", stored)
    assert "\n" not in str(caught.value)


def test_unknown_schemes_raise() -> None:
    with pytest.raises(UnknownSchemeError, match="ROT13"):
        hash_password("secret", "ROT13")
    with pytest.raises(UnknownSchemeError):
        verify_password("secret", "{ROT13}frperg")
    with pytest.raises(UnknownSchemeError):
        verify_password("secret", "{}secret")
    assert issubclass(UnknownSchemeError, PasswordSchemeError)
    assert issubclass(PasswordSchemeError, ValueError)


def test_nul_in_a_password() -> None:
    with pytest.raises(PasswordSchemeError, match="NUL"):
        hash_password("a\0b", "SHA512-CRYPT")
    assert verify_password("secret\0", "{PLAIN}secret") is False


def test_bcrypt_2x_with_8_bit_characters_is_refused() -> None:
    stored = "{BLF-CRYPT}$2x$05$OHltdIUHU6928Dq1Uf/l.OH3tqT6EpJNSD4juEXldG.vg1xflzuPC"
    with pytest.raises(PasswordSchemeError, match="2x"):
        verify_password("sécret", stored)


# -- the DINOMAIL_PASSWORD_SCHEME setting -------------------------------------------------------


ORIGINAL_NAMES = {
    "core.utils.make_password_plain": "PLAIN",
    "core.utils.make_password_plain_trunc": "PLAIN-TRUNC",
    "core.utils.make_password_cleartext": "CLEARTEXT",
    "core.utils.make_password_clear": "CLEAR",
    "core.utils.make_password_sha": "SHA",
    "core.utils.make_password_ssha": "SSHA",
    "core.utils.make_password_sha256": "SHA256",
    "core.utils.make_password_ssha256": "SSHA256",
    "core.utils.make_password_sha512": "SHA512",
    "core.utils.make_password_ssha512": "SSHA512",
    "core.utils.make_password_plain_md5": "PLAIN-MD5",
    "core.utils.make_password_ldap_md5": "LDAP-MD5",
    "core.utils.make_password_crypt": "CRYPT",
    "core.utils.make_password_des_crypt": "DES-CRYPT",
    "core.utils.make_password_md5_crypt": "MD5-CRYPT",
    "core.utils.make_password_sha256_crypt": "SHA256-CRYPT",
    "core.utils.make_password_sha512_crypt": "SHA512-CRYPT",
    "core.utils_argon.make_password_argon2i": "ARGON2I",
    "core.utils_argon.make_password_argon2id": "ARGON2ID",
    "core.utils_bcrypt.make_password_blf_crypt": "BLF-CRYPT",
    "core.utils_passlib.make_password_lanman": "LANMAN",
}


@pytest.mark.parametrize(("dotted", "scheme"), ORIGINAL_NAMES.items())
def test_original_dotted_names(dotted: str, scheme: str) -> None:
    assert scheme_from_setting(dotted, allow_weak=True) == scheme
    if scheme in WEAK_SCHEMES:
        with pytest.raises(PasswordSchemeError, match="weak"):
            scheme_from_setting(dotted, allow_weak=False)
    else:
        assert scheme_from_setting(dotted, allow_weak=False) == scheme


def test_the_original_default_stays_allowed() -> None:
    assert scheme_from_setting("core.utils.make_password_ssha512", allow_weak=False) == "SSHA512"


@pytest.mark.parametrize("scheme", SCHEMES)
def test_setting_accepts_scheme_names(scheme: str) -> None:
    assert scheme_from_setting(f" {scheme.lower()} ", allow_weak=True) == scheme
    if scheme in WEAK_SCHEMES:
        with pytest.raises(PasswordSchemeError) as caught:
            scheme_from_setting(scheme, allow_weak=False)
        message = str(caught.value)
        assert message.startswith(f"{scheme} is a weak password scheme (")
        assert "ALLOW_WEAK_PASSWORD_SCHEMES" in message and "\n" not in message
    else:
        assert scheme_from_setting(scheme, allow_weak=False) == scheme


@pytest.mark.parametrize(
    "value", ["ROT13", "", "core.utils.make_password_rot13", "core.utils.make_password_PLAIN",
              "SHA.foo"],
)
def test_setting_refuses_unknown_values(value: str) -> None:
    with pytest.raises(PasswordSchemeError) as caught:
        scheme_from_setting(value, allow_weak=True)
    assert "\n" not in str(caught.value)


def test_setting_keeps_a_suffix() -> None:
    assert scheme_from_setting("ssha512.hex", allow_weak=False) == "SSHA512.HEX"


# -- against the real doveadm -------------------------------------------------------------------


@needs_doveadm
@pytest.mark.parametrize("scheme", DOVEADM_SCHEMES)
def test_doveadm_accepts_our_hashes(scheme: str) -> None:
    stored = hash_password(PASSWORD, scheme, user=USER)
    accepted = doveadm("-t", stored, "-p", PASSWORD, "-u", USER)
    assert (accepted.returncode, accepted.stdout) == (0, f"{stored} (verified)\n"), accepted.stderr
    refused = doveadm("-t", stored, "-p", WRONG, "-u", USER)
    assert refused.returncode == 75
    assert refused.stderr == (
        "Fatal: reverse password verification check failed: Password mismatch\n"
    )


@needs_doveadm
@pytest.mark.parametrize("scheme", DOVEADM_SCHEMES)
def test_we_accept_doveadm_hashes(scheme: str) -> None:
    made = doveadm("-s", scheme, "-p", PASSWORD, "-u", USER)
    assert made.returncode == 0, made.stderr
    stored = made.stdout.strip()
    if scheme == "PLAIN-TRUNC":
        # doveadm writes no length, and refuses the result itself.
        assert stored == "{PLAIN-TRUNC}" + PASSWORD
        with pytest.raises(PasswordSchemeError):
            verify_password(PASSWORD, stored)
        return
    assert verify_password(PASSWORD, stored, user=USER) is True
    assert verify_password(WRONG, stored, user=USER) is False


@needs_doveadm
def test_doveadm_accepts_our_non_default_costs_and_suffixes() -> None:
    for scheme, rounds in [*CHEAP_ROUNDS.items(), ("ARGON2I", 3), ("SCRAM-SHA-256", 5000)]:
        stored = hash_password(PASSWORD, scheme, rounds=rounds)
        assert doveadm("-t", stored, "-p", PASSWORD).returncode == 0, stored
    for scheme in ("SHA.hex", "SSHA512.b64", "PLAIN.B64", "CRAM-MD5.b64", "SHA512-CRYPT.hex"):
        stored = cheap_hash(PASSWORD, scheme)
        assert doveadm("-t", stored, "-p", PASSWORD).returncode == 0, stored
        assert doveadm("-t", stored, "-p", WRONG).returncode == 75, stored
