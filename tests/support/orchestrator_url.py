"""Go's net/url and path, as the stand-in orchestrator needs them: url.Parse / url.ParseRequestURI (for
go-livepeer's URL checks), path.Clean (ServeMux's redirects) and url.JoinPath (the proxy's target path).

This module does not import llm_runner (see tests/orchestrator_rules.py)."""

from __future__ import annotations

import re

PATH_SAFE = "/:@!$&'()*+,;=-._~"  # what Go's URL.EscapedPath leaves alone
HOST_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~!$&'()*+,;=:[]<>\"")
USERINFO_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._:~!$&'()*+,;=%@")


def _check_escapes(s: str, in_host: bool) -> None:
    i = 0
    while i < len(s):
        if s[i] == "%":
            pair = s[i + 1 : i + 3]
            if len(pair) < 2 or any(c not in "0123456789abcdefABCDEF" for c in pair):
                raise ValueError("invalid URL escape")
            if in_host and int(pair[0], 16) < 8 and pair != "25":
                raise ValueError("invalid URL escape in host")
            i += 3
            continue
        if in_host and ord(s[i]) < 0x80 and s[i] not in HOST_CHARS:
            raise ValueError("invalid character in host name")
        i += 1


def _port_ok(colon_port: str) -> bool:
    return re.fullmatch(r"(:[0-9]*)?", colon_port) is not None


def go_url(raw: str, request_uri: bool) -> tuple[str, str, str]:
    """(scheme, host, path) as net/url's ParseRequestURI (True) or Parse (False) sees them; ValueError
    where Go returns an error."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        raise ValueError("invalid control character in URL")
    if not request_uri:
        raw, _, fragment = raw.partition("#")
        _check_escapes(fragment, False)
    if request_uri and raw == "":
        raise ValueError("empty url")
    if raw == "*":
        return "", "", "*"
    scheme, rest = "", raw
    match = re.match(r"[A-Za-z][A-Za-z0-9+.\-]*:", raw)
    if raw.startswith(":"):
        raise ValueError("missing protocol scheme")
    if match:
        scheme, rest = match.group()[:-1].lower(), raw[match.end() :]
    rest = rest[:-1] if rest.endswith("?") and rest.count("?") == 1 else rest.split("?", 1)[0]
    if not rest.startswith("/"):
        if scheme:
            return scheme, "", ""  # opaque
        if request_uri:
            raise ValueError("invalid URI for request")
        if ":" in rest.split("/", 1)[0]:
            raise ValueError("first path segment in URL cannot contain colon")
    host = ""
    if rest.startswith("//") and (scheme or (not request_uri and not rest.startswith("///"))):
        authority, slash, tail = rest[2:].partition("/")
        rest = slash + tail
        userinfo, at, host = authority.rpartition("@")
        if at:
            if any(ord(c) < 0x80 and c not in USERINFO_CHARS for c in userinfo):
                raise ValueError("invalid userinfo")
            _check_escapes(userinfo, False)
        if host.startswith("["):
            close = host.rfind("]")
            if close < 0 or not _port_ok(host[close + 1 :]):
                raise ValueError("bad IP-literal host")
        elif ":" in host and not _port_ok(host[host.rfind(":") :]):
            raise ValueError("invalid port")
        _check_escapes(host, True)
    _check_escapes(rest, False)
    return scheme, host, rest


def http_url_ok(raw: str) -> bool:
    try:
        scheme, host, _ = go_url(raw, request_uri=True)
    except ValueError:
        return False
    return bool(host) and scheme in ("http", "https")


def go_clean(p: str) -> str:
    rooted, out = p.startswith("/"), []
    for seg in p.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(seg)
    joined = ("/" if rooted else "") + "/".join(out)
    return joined or ("/" if rooted else ".")


def join_proxy_path(target_path: str, app_path: str) -> str:
    """url.JoinPath("/", target.Path, appPath) (ai_http.go:841): path.Join, trailing slash kept."""
    joined = go_clean("/".join(e for e in ("/", target_path, app_path) if e))
    if app_path.endswith("/") and not joined.endswith("/"):
        joined += "/"
    return joined
