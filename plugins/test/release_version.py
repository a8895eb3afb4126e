# -*- coding: utf-8 -*-
# Copyright: LeanVibe Deploy engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: release_version
short_description: Whether a value is a release version this collection deploys
version_added: 0.2.0
author:
  - LeanVibe Deploy engineers (@leanvibe)
description:
  - True for text or a whole number of 1 to 64 letters, digits, C(.), C(_), C(+) or C(-), starting with a letter or
    digit, without C(..).
  - The same check as the modules and M(leanvibe.deploy.rollout_plan) make (C(validate_release_version) in
    C(module_utils/common.py)), so a role refuses what the playbooks refuse. V(null), V(true) and the number V(2.10),
    which YAML reads as V(2.1), are refused.
options:
  _input:
    description: The value to check.
    type: raw
    required: true
"""

EXAMPLES = r"""
- name: Check the release version
  ansible.builtin.assert:
    that: app_slot_version is leanvibe.deploy.release_version
"""

RETURN = r"""
_value:
  description: Whether the value is a valid release version.
  type: bool
"""

from ansible_collections.leanvibe.deploy.plugins.module_utils.common import validate_release_version


def release_version(value):
    try:
        validate_release_version(value)
    except ValueError:
        return False
    return True


class TestModule:
    def tests(self):
        return {"release_version": release_version}
