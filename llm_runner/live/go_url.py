"""Go's net/url, as far as go-livepeer's checks on runner URLs see it (url.Parse, url.ParseRequestURI):
a URL go-livepeer would refuse is caught before it is written or sent."""

from __future__ import annotations

from dataclasses import dataclass

_HOST_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~!$&'()*+,;=:[]<>\"")
_USERINFO_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._:~!$&'()*+,;=%@")
_HEX = set("0123456789abcdefABCDEF")


@dataclass(frozen=True)
class ParsedURL:
    scheme: str
    host: str
    path: str


def _unescape(s: str, host: bool) -> None:
    i = 0
    while i < len(s):
        c = s[i]
        if c == "%":
            if i + 2 >= len(s) or s[i + 1] not in _HEX or s[i + 2] not in _HEX:
                raise ValueError("invalid URL escape")
            if host and int(s[i + 1], 16) < 8 and s[i : i + 3] != "%25":
                raise ValueError("invalid URL escape in host")
            i += 3
            continue
        if host and ord(c) < 0x80 and c not in _HOST_OK:
            raise ValueError(f"invalid character {c!r} in host name")
        i += 1


def _valid_port(colon_port: str) -> bool:
    return colon_port == "" or (colon_port.startswith(":") and all("0" <= c <= "9" for c in colon_port[1:]))


def _parse_host(host: str) -> str:
    if host.startswith("["):
        end = host.rfind("]")
        if end < 0:
            raise ValueError("missing ']' in host")
        if not _valid_port(host[end + 1 :]):
            raise ValueError("invalid port")
    else:
        colon = host.rfind(":")
        if colon != -1 and not _valid_port(host[colon:]):
            raise ValueError("invalid port")
    _unescape(host, host=True)
    return host


def parse_url(raw: str, via_request: bool) -> ParsedURL:
    """url.Parse (via_request=False, fragment cut) or url.ParseRequestURI (True); ValueError if Go errs."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        raise ValueError("invalid control character in URL")
    if not via_request:
        raw, _, fragment = raw.partition("#")
        _unescape(fragment, host=False)
    if raw == "" and via_request:
        raise ValueError("empty url")
    if raw == "*":
        return ParsedURL("", "", "*")
    scheme, rest = "", raw
    for i, c in enumerate(raw):
        if "a" <= c <= "z" or "A" <= c <= "Z":
            continue
        if "0" <= c <= "9" or c in "+-.":
            if i == 0:
                break
            continue
        if c == ":":
            if i == 0:
                raise ValueError("missing protocol scheme")
            scheme, rest = raw[:i].lower(), raw[i + 1 :]
        break
    rest = rest[:-1] if rest.endswith("?") and rest.count("?") == 1 else rest.partition("?")[0]
    if not rest.startswith("/"):
        if scheme:
            return ParsedURL(scheme, "", "")  # opaque ("http:foo"): no host
        if via_request:
            raise ValueError("invalid URI for request")
        if ":" in rest.partition("/")[0]:
            raise ValueError("first path segment in URL cannot contain colon")
    host = ""
    if (scheme or (not via_request and not rest.startswith("///"))) and rest.startswith("//"):
        authority, slash, tail = rest[2:].partition("/")
        rest = slash + tail
        at = authority.rfind("@")
        if at >= 0:
            userinfo = authority[:at]
            if any(c not in _USERINFO_OK and ord(c) < 0x80 for c in userinfo):
                raise ValueError("invalid userinfo")
            _unescape(userinfo, host=False)
        host = _parse_host(authority[at + 1 :])
    _unescape(rest, host=False)
    return ParsedURL(scheme, host, rest)


def is_http_url(raw: str) -> bool:
    """url.ParseRequestURI succeeds, with a host and an http(s) scheme (live_runner.go:836-839, 859-862)."""
    try:
        u = parse_url(raw, via_request=True)
    except ValueError:
        return False
    return bool(u.host) and u.scheme in ("http", "https")
