"""Passwords and the hashes doveadm made of them, shared by the tests of the password schemes
and of `dinomail pw`."""

from __future__ import annotations

PASSWORD = "pässwörd 1€"
WRONG = "passwörd 1€"
USER = "anne@example.org"


# `doveadm pw -l` on Dovecot 2.3.19.1.
DOVEADM_SCHEMES = (
    "SHA1", "SSHA512", "SCRAM-SHA-256", "BLF-CRYPT", "PLAIN", "HMAC-MD5", "OTP", "SHA512", "SHA",
    "DES-CRYPT", "CRYPT", "SSHA", "MD5-CRYPT", "PLAIN-MD4", "PLAIN-MD5", "SCRAM-SHA-1",
    "SHA512-CRYPT", "CLEAR", "CLEARTEXT", "ARGON2I", "ARGON2ID", "SSHA256", "MD5", "PBKDF2",
    "SHA256", "CRAM-MD5", "PLAIN-TRUNC", "SHA256-CRYPT", "SMD5", "DIGEST-MD5", "LDAP-MD5",
)


# `doveadm pw -s SCHEME -p "$PASSWORD" -u "$USER"`, with -r or a suffix where written.
DOVEADM_VECTORS = [
    "{ARGON2I}$argon2i$v=19$m=32768,t=4,p=1$fgD392c6B/7FuwRdcC7trQ$o9dcbpzuM3vpHRhhIzj5ymKulzQFSfAe29yhCINmhgU",
    "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$nw5RfHsYHJyDqOXekTdF0w$mErDmc+iItlifNFm44KXyIskO30GEdKFQeejmlquURQ",
    "{BLF-CRYPT}$2y$05$Da/brPGReRifGHxEC7wU2eRo9JSIA8uJJdTcNVYzTYJcJ.r9JAhqy",
    "{CLEAR}pässwörd 1€",
    "{CLEARTEXT}pässwörd 1€",
    "{CRAM-MD5}d0d03021944b7d35ec739af26260b08a9dea4a82238f4fb0d2a2272b1d0999a2",
    "{CRYPT}$2y$05$zL7n5QTRyUJrMTEN/IC6cec23meiw7E.R6YyUHTMW1Ir5u8ypbDye",
    "{DES-CRYPT}c97uwx5Bh.DtA",
    "{DIGEST-MD5}35d19e3952e32952a3fb191fb28a9777",
    "{HMAC-MD5}d0d03021944b7d35ec739af26260b08a9dea4a82238f4fb0d2a2272b1d0999a2",
    "{LDAP-MD5}/OZ8mIYBFwT91cK9YXwFJg==",
    "{MD5}$1$R/Wsl4Y2$6iyQ4QGUdBSCREQT/A8xH.",
    "{MD5-CRYPT}$1$waQYFEAx$YXWYxJM.zjMFcylCiHN5./",
    "{OTP}sha1 1024 85710246e4c425c8 a3550cf20ca906bc",
    "{PBKDF2}$1$ba3wl5p8Ewwxx2jb$5000$ab354d253e1ed82f84ed0bccb104573e136c8845",
    "{PLAIN}pässwörd 1€",
    "{PLAIN-MD4}8329617a163532cef5c060618205e211",
    "{PLAIN-MD5}fce67c9886011704fdd5c2bd617c0526",
    "{SCRAM-SHA-1}4096,FE02dADjmQSu7og466j+5w==,27hQhXPN8vjHRmADmolmlpIWuKs=,pLFyUTjh2YS0YqPVi2VjKclDwj8=",
    "{SCRAM-SHA-256}4096,vlS6gOypAyswCglRyO0dhg==,CwVu4jPHqwsOWdHpurJVLLnIy4Ux9blTUJdpdHX8EoI=,cW8BAkZseimdN3Op86CFs8aPXq3A2/7rk4oKXYYruy4=",
    "{SHA}ybhDGpjpXE08Y2cSctYndQxDKUo=",
    "{SHA1}ybhDGpjpXE08Y2cSctYndQxDKUo=",
    "{SHA256}zgZYLiCQEM+PpBCruXksQNtLkVyI4YgYyGR2rXg+mWU=",
    "{SHA256-CRYPT}$5$LlfYQhGND.M8sk29$/B3U4Q5mjuXncKKEq6Cc8m6dQrp3QKUJ23VAUwKVqlA",
    "{SHA512}7uhUuxyiHcyws75cX+LIfMIBoAkB9nnmyLX+Dxfukk1oNFbRMiYPx5eXUK+IsMBi5iY61iIoqjL1Zdk5sXMVUw==",
    "{SHA512-CRYPT}$6$WG6Ty0c6sagcFwT8$6Elzps9eOonyP.SQlEVvKM4mRKEKjFB2Y/K.BYB6sr16tKfGnwMvLp7sBnKXXQx.cwev2CfbZ5OWSfE.4OKwh0",
    "{SMD5}Nng7NbURq30ZJBVRsR4BBp6lTKQ=",
    "{SSHA}Va+48Zalu9ihqKeYa/DkSVuKHsgAA/Xd",
    "{SSHA256}POIseq3g15s0EeD8OoJ8RZ8NTlUx9/yQviEAwJTH1auTRmhR",
    "{SSHA512}8KN4+P35XKy8I4U5v029onm91KxQtEuE2sQT7SjxnXafGs7v8wxvDueVZZGLypiw7k/T93bqKr+lvTOpVtkWpOFF30A=",
    # -r
    "{SHA512-CRYPT}$6$rounds=1000$eUdROAd2X1qkyPw/$BmriGzRcR3SCy6U4iLc3OgtRORNNmleCZcxAXbPdTaRR9OsRlH1FcodCrHjmikcEnlIaC8yzvnLJ1qjiBqZiz/",
    "{SHA256-CRYPT}$5$rounds=1000$SpFWzSVrZO57Nzu3$/E8N0fdsws2B5TsMpsXDgtJqvFfMIyoMfduxI7CfzI7",
    "{BLF-CRYPT}$2y$04$boGtbdZvdamfjeBuShS9OedhjLwyBRQWUbwzx59AI2wiT4d/sAXou",
    "{PBKDF2}$1$ar44vOGBQiO7ELjK$100$b9e85bea7622867ff3560c9f49ea173961dda191",
    "{ARGON2I}$argon2i$v=19$m=32768,t=3,p=1$9/Cw8JMfZ1IBZIRj0nI3hA$1fCRSuLjByR5jG5UWStreYA95NI3guO+bKJ8Ge9Fx8c",
    # suffixes
    "{SHA.HEX}c9b8431a98e95c4d3c63671272d627750c43294a",
    "{SSHA.HEX}c7e3ea97cd267afb21f5ce99a5321338bc12849ff338b3a6",
    "{SSHA512.B64}ML23aejC6jsL3qFfL2rYTCKrwY+87K8b6r0PMshcEtt/gG1mau7yHAMLQpqEpqwANOVl3+7gFaGjoWXPU4KHcYCmNos=",
    "{PLAIN.B64}cMOkc3N3w7ZyZCAx4oKs",
    "{CRAM-MD5.B64}0NAwIZRLfTXsc5ryYmCwip3qSoIjj0+w0qInKx0JmaI=",
    "{PLAIN-MD5.BASE64}/OZ8mIYBFwT91cK9YXwFJg==",
    "{LDAP-MD5.HEX}fce67c9886011704fdd5c2bd617c0526",
    "{SHA256-CRYPT.B64}JDUkOGtZLk9nblFDUDA1eDBNUiR5Ujg4bmxNYTh0aURLYU9ORXFCM2JOelIvUTR0Zll6TFhGOUNrR2k3VUU4",
]
