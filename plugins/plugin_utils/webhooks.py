# -*- coding: utf-8 -*-
# Copyright: LeanVibe Deploy engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Deployment events to webhooks from a detached process on the controller, so that a slow or dead receiver never
holds a run up (an emergency rollback must end as soon as traffic is back).

This file is also the sender: `python webhooks.py` (with the controller's Python) reads {"webhooks", "event",
"timeout"} as JSON on stdin and POSTs the event to each webhook. It imports no collection code, so it runs as a script.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

TIMEOUT_S = 5.0
ACCEPTED = (200, 201, 202, 204)


def targets(webhooks):
    """[(url, headers)] of `webhooks`: URLs, or mappings with url and headers (the form deploy_webhooks takes)."""
    found = []
    for hook in webhooks or []:
        if isinstance(hook, dict):
            url, headers = hook.get("url"), hook.get("headers") or {}
        else:
            url, headers = hook, {}
        if url:
            found.append((str(url), dict((str(key), str(value)) for key, value in headers.items())))
    return found


def send_detached(webhooks, event, timeout=TIMEOUT_S):
    """Starts the sender in a session of its own and returns how many webhooks it POSTs to, without waiting for it."""
    hooks = targets(webhooks)
    if not hooks or not event:
        return 0
    payload = json.dumps({"webhooks": hooks, "event": event, "timeout": timeout}).encode("utf-8")
    # Its own session and no inherited descriptors: neither ansible-playbook nor whoever reads its output waits for it.
    with open(os.devnull, "wb") as devnull:
        sender = subprocess.Popen([sys.executable, os.path.abspath(__file__)], stdin=subprocess.PIPE, stdout=devnull,
                                  stderr=devnull, close_fds=True, start_new_session=True)
    sender.stdin.write(payload)
    sender.stdin.close()
    return len(hooks)


def post(url, headers, event, timeout=TIMEOUT_S):
    """POSTs `event` as JSON; whether the receiver accepted it. Never raises: a notification never fails a deployment."""
    # Here, not at the top: only the sender needs it, not the action plugin that starts it.
    from ansible.module_utils.urls import open_url

    try:
        with open_url(url, data=json.dumps(event).encode("utf-8"), method="POST", timeout=timeout,
                      headers=dict({"Content-Type": "application/json"}, **headers)) as response:
            return response.status in ACCEPTED
    except (OSError, ValueError):
        return False


def main():
    try:
        payload = json.load(sys.stdin)
    except ValueError:
        return 1
    results = [post(url, headers, payload["event"], payload.get("timeout", TIMEOUT_S)) for url, headers in payload["webhooks"]]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
