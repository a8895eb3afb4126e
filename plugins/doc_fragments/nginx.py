# -*- coding: utf-8 -*-
# Copyright: LeanVibe Deploy engineers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:

    # How a module reaches the LB's nginx: its leanvibe conf dir, the Lua admin socket and the command line.
    DOCUMENTATION = r"""
options:
  conf_dir:
    description:
      - Folder of the LB's leanvibe config, included by the nginx config. It holds C(<app>.upstreams.conf),
        C(<app>.weights) and C(<app>.state.json) (the upstream members per color).
    type: path
    required: true
  admin_socket:
    description:
      - Unix socket of the LB's Lua admin endpoint. When set, weights change in nginx's memory without a reload.
      - Leave unset when nginx has no Lua module; every weight change then reloads nginx.
    type: path
  nginx_binary:
    description: The nginx executable.
    type: path
    default: nginx
  nginx_prefix:
    description: Prefix (C(-p)) of a user-level nginx instance.
    type: path
  nginx_conf:
    description: Main config file (C(-c)) of the nginx instance.
    type: path
  pid_file:
    description:
      - Pid file of the nginx master. When nginx is not running the files are written and tested, and apply at its start.
    type: path
    default: /run/nginx.pid
"""
