"""Secrets: which key names and values look like one, and scrubbing them out of any error text.

Why: credentials live only in environment variables (`password_env: NAME`); a password written
into a file, or echoed back by a library in a connect error, must never reach an Observation, a
log or a report. Files are checked when loaded (`is_secret_key`, `credential_in_host`,
`credential_in_user`); every error text passes through `scrub()` where it becomes an
Observation, a HarnessError or a printed line. Values read from password_env variables are
registered with `register()` so that even a library that prints them verbatim is scrubbed.
"""
from __future__ import annotations

import re
import threading

MASK = "***"

# key names (case-insensitive, '_' and '-' ignored) that suggest a secret value
_SECRET_WORDS = ("password", "passwd", "pwd", "secret", "token", "apikey", "privatekey", "credential",
                 "passphrase")
_ALLOWED_KEYS = frozenset({"passwordenv"})  # password_env: NAME is the reference, not the value
SECRET_KEY_MESSAGE = "secrets must not be written inline; use password_env: NAME"

_known: set[str] = set()
_lock = threading.Lock()

# user:password@host (URLs, scp-style targets, connection strings)
_USERINFO = re.compile(r"(?<![\w.-])([\w.\\$-]{1,256}):([^\s@/:]{1,256})@(?=[\w\[.-])")
# password=..., pwd=..., "token": "..." (command lines, connection strings, JSON)
_KEY = r"[\w-]*(?:password|passwd|pwd|secret|token|api[_-]?key|passphrase|credential)s?"
_ASSIGNED = re.compile(rf"(?i)(\b{_KEY}\s*=\s*[\"']?|\"{_KEY}\"\s*:\s*\")([^\s\"',;}}]+)")
# DOMAIN\user%password, or -U/--user user%password (smbclient, net), in a command line or an error
# text; a bare `a%b` is left alone (URL escapes, percentages)
_SMB_USER = re.compile(r"((?:(?<![\w.-])[\w.-]{1,255}\\{1,2}|(?:-U|--user)[= ]?['\"]?)[\w.$@-]{1,256})%([^\s'\"]{1,256})")
# a password given as a command-line flag: sshpass -p X, --password X / --password=X, plink's -pw X
_FLAG = re.compile(r"(?i)((?:\bsshpass\s+-p|(?<![\w-])(?:--password|--passwd|--pass|-pw))(?:\s+|=)['\"]?)([^\s'\"]+)")
_BEARER = re.compile(r"(?i)\b(authorization\s*[:=]\s*(?:bearer|basic)?\s*)(\S+)")


def normalized_key(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def is_secret_key(name: object) -> bool:
    """True for key names such as password, Passwd, API-Key, auth_token, private_key, credentials."""
    if not isinstance(name, str):
        return False
    key = normalized_key(name)
    if key in _ALLOWED_KEYS:
        return False
    return (key.startswith("auth") and key != "author") or any(word in key for word in _SECRET_WORDS)


def credential_in_host(host: str) -> bool:
    """`user:pw@host` or `user@host` in a host field: credentials belong in user:/password_env:."""
    return "@" in host


# What a password appended to a user name looks like, in the syntaxes tools accept it in:
# `tester:pw` (URLs, paramiko/ssh-style), `LAB\tester%pw` (smbclient -U, Samba's net, pypsexec users
# copying it), `tester/pw` (Oracle-style, some runas wrappers). Windows sAMAccountName forbids
# `" / \ [ ] : ; | = , + * ? < >` (only one `\` may separate the domain), POSIX names use none of
# `%`, `/`, `:`: so none of these separators is a user name.
_USER_SECRET_SEPARATORS = (":", "%", "/")


def credential_in_user(user: str) -> bool:
    """`tester:pw`, `LAB\\tester%pw` or `tester/pw` in a user field: a password appended to the user name."""
    return any(sep in user for sep in _USER_SECRET_SEPARATORS)


def credential_in_text(text: str) -> bool:
    """True when `text` (a command template, say) carries what scrub() would mask: a password inline."""
    return scrub(text) != text


def register(value: str | None) -> None:
    """Remember a secret value (e.g. read from a password_env variable) so scrub() masks it."""
    if value and len(value) >= 3:
        with _lock:
            _known.add(value)


def scrub(text: object) -> str:
    """`text` with every registered secret and every password-looking fragment replaced by ***."""
    s = str(text)
    if _known:
        with _lock:
            known = sorted(_known, key=len, reverse=True)
        for value in known:
            if value in s:
                s = s.replace(value, MASK)
    s = _USERINFO.sub(lambda m: f"{m.group(1)}:{MASK}@", s)
    s = _ASSIGNED.sub(lambda m: m.group(1) + MASK, s)
    s = _SMB_USER.sub(lambda m: f"{m.group(1)}%{MASK}", s)
    s = _FLAG.sub(lambda m: m.group(1) + MASK, s)
    return _BEARER.sub(lambda m: m.group(1) + MASK, s)
