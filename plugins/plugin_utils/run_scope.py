# -*- coding: utf-8 -*-
# Copyright: LeanVibe Deploy engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whether a run reaches the hosts its playbook needs (lookup run_scope), as one sentence or an empty string.

Without this check, an inventory without an `lb` host or a --limit that leaves out an app host skips the plays on
lb[0] or app: the run fails on an undefined variable, or "succeeds" without doing anything.
"""

from __future__ import annotations


def _names(value):
    return [str(name) for name in value or []]


def needed_hosts(groups, needed_groups, first_only=False):
    """The hosts the playbook runs on: every host of `needed_groups`, or the first of each with `first_only`."""
    hosts = []
    for group in needed_groups:
        members = _names(groups.get(group))
        for host in members[:1] if first_only else members:
            if host not in hosts:
                hosts.append(host)
    return hosts


def scope_problem(groups, play_hosts, needed_groups, first_only=False, inventory_sources=None, limit=None):
    """The sentence that refuses the run, or "" when the inventory and --limit reach every host it needs.

    `groups` is Ansible's `groups` (group -> host names), `play_hosts` the hosts the play on `all` runs on
    (ansible_play_hosts_all: the inventory after --limit).
    """
    needed_groups = _names(needed_groups)
    if not needed_groups:
        raise ValueError("run_scope needs the groups the playbook needs, for example lb and app.")
    missing = [group for group in needed_groups if not _names(groups.get(group))]
    if missing:
        return "inventory %s has no host in group %s; this playbook needs hosts in %s %s." % (
            ", ".join(_names(inventory_sources)) or "(none)", " or ".join(missing),
            "group" if len(needed_groups) == 1 else "groups", " and ".join(needed_groups))
    reached = set(_names(play_hosts))
    left_out = [host for host in needed_hosts(groups, needed_groups, first_only) if host not in reached]
    if left_out:
        return "--limit %s leaves out %s; this playbook needs %s %s." % (
            limit or "", ", ".join(left_out), "the first host of group" if first_only else "every host of groups",
            " and ".join(needed_groups))
    return ""
