# -*- coding: utf-8 -*-
# Copyright: LeanVibe Deploy engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One GET of a health URL with the standard library only.

The rollback module is the emergency path: importing ansible.module_utils.urls (and through it cryptography) and the
supervisor client for one health request doubled the module's start-up, so it uses this instead. Same answers as
slot.check_health: no proxy, no redirects followed, certificates not verified.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse


def _connection(url, timeout):
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        import ssl  # only for an https LB URL

        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        connection = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout, context=context)
    elif parts.scheme == "http":
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    else:
        raise ValueError("unknown url type: %r" % url)
    return connection, (parts.path or "/") + ("?" + parts.query if parts.query else "")


def check_health(url, version=None, timeout=2.0):
    """(healthy, detail) for one GET of the health URL; a version mismatch is unhealthy."""
    try:
        connection, target = _connection(url, timeout)
        try:
            connection.request("GET", target, headers={"Connection": "close"})
            response = connection.getresponse()
            body = response.read(65536)
            status = response.status
        finally:
            connection.close()
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return False, str(getattr(exc, "reason", exc)) or exc.__class__.__name__
    return judge(status, body, version)


def judge(status, body, version=None):
    """(healthy, detail) of a health answer: status 200 and, when `version` is given, a JSON body with that version."""
    if status != 200:
        return False, "HTTP %d" % status
    if version is not None:
        try:
            served = json.loads(body.decode("utf-8")).get("version")
        except (ValueError, AttributeError):
            return False, "health body is not JSON with a version"
        if str(served) != str(version):
            return False, "serves version %s, not %s" % (served, version)
    return True, "HTTP 200"
