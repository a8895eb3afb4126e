#!/usr/bin/env bash
# Run `ansible-test sanity` on the leanvibe.deploy collection, offline-capable.
#
#   scripts/ansible-test-sanity.sh [extra ansible-test sanity options]
#   e.g. scripts/ansible-test-sanity.sh --test validate-modules
#
# - Sanity checks what ships: the collection tarball is built (ansible-galaxy collection
#   build, galaxy.yml's build_ignore applies) and its content synced to
#   .cache/sanity/ansible_collections/leanvibe/deploy, where ansible-test needs it (stale
#   files are deleted, tests/output with ansible-test's cached venvs is kept). The copy
#   gets an empty git repository of its own, else ansible-test finds the enclosing
#   checkout (which ignores .cache/) and skips every target.
# - `--venv` bootstraps pip with a get-pip script from ci-files.testing.ansible.com
#   unless ~/.ansible/test/cache/get_pip_<ver>.py exists (ansible/ansible#77304);
#   scripts/sanity_get_pip.py is installed there as an offline stand-in.
# - Every default sanity test runs; the exit status is ansible-test's.
# - ansible-test passes no PIP_* variables to the pip it runs (only HOME, PATH, ...):
#   pip settings must come from pip config files (/etc/pip.conf, ~/.config/pip/pip.conf).
#   The sanity venvs (~/.ansible/test/venv, tests/output/.tmp) need PyPI once; for a
#   machine with no index at all, put `no-index = true` and `find-links = <dir>` in
#   pip.conf, <dir> holding `pip download pip==<ver> -r` each of
#   ansible_test/_data/requirements/sanity.*.txt.
#
# Environment: VENV (default <repo>/.venv), SANITY_PYTHON (default 3.11).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${VENV:-$repo_root/.venv}
case $venv in /*) ;; *) venv=$repo_root/$venv ;; esac
sanity_python=${SANITY_PYTHON:-3.11}
dest=$repo_root/.cache/sanity/ansible_collections/leanvibe/deploy

if [[ ! -x $venv/bin/ansible-test ]]; then
    echo "sanity: $venv/bin/ansible-test not found: run 'make setup' first" >&2
    exit 2
fi

"$venv/bin/python" "$repo_root/scripts/sanity_prepare.py" "$repo_root" "$dest"

cd "$dest"
# ansible-test uses its own ansible.cfg and environment for the tests; drop the
# project settings anyway so nothing relative to the checkout can leak in.
unset ANSIBLE_CONFIG ANSIBLE_COLLECTIONS_PATH ANSIBLE_COLLECTIONS_PATHS

start=$SECONDS
status=0
"$venv/bin/ansible-test" sanity --venv --python "$sanity_python" "$@" || status=$?
echo "sanity: ansible-test sanity finished with status $status in $((SECONDS - start))s" >&2
exit "$status"
