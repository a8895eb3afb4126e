"""Offline stand-in for the get-pip.py script that `ansible-test --venv` downloads.

ansible-test bootstraps pip into each virtual environment it creates by running
~/.ansible/test/cache/get_pip_<pip version with "." replaced by "_">.py and only
downloads that file from ci-files.testing.ansible.com when it is missing
(ansible_test/_util/target/setup/requirements.py, see ansible/ansible#77304).
That host is not reachable from every network, so scripts/ansible-test-sanity.sh
copies this file to that path instead.

ansible-test runs it through quiet_pip.py (runpy, alter_sys=True) with arguments
such as: --disable-pip-version-check pip==24.2 --no-setuptools --no-wheel

What it does: bootstrap the pip bundled with the interpreter (ensurepip, no
network), then let that pip install the requested pip version from the
machine's normal package index.  If the index cannot be reached the bundled
pip is kept, which is enough for ansible-test to install the sanity
requirements from a local cache or find-links directory.
"""
# LEANVIBE-OFFLINE-GET-PIP (marker: scripts/ansible-test-sanity.sh replaces only files carrying it)

import os
import subprocess
import sys

# get-pip.py options that pip install does not know
GET_PIP_ONLY_OPTIONS = ('--no-setuptools', '--no-wheel')


def main():
    args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY_OPTIONS]

    try:
        import ensurepip
    except ImportError:
        sys.stderr.write('offline get-pip: this Python has no ensurepip module '
                         '(on Debian/Ubuntu: apt-get install python3-venv)\n')
        sys.exit(1)

    # ensurepip "isolates" its pip run by deleting every PIP_* variable from
    # os.environ and setting PIP_CONFIG_FILE=/dev/null, and never undoes that.
    # Run it in a child process and give the real pip call a copy of the
    # environment taken before, so it keeps the machine's settings (PIP_CERT,
    # PIP_FIND_LINKS, /etc/pip.conf index and cert=, ...).  A PIP_CONFIG_FILE
    # of /dev/null inherited from an ensurepip parent is dropped for the same reason.
    env = os.environ.copy()
    if env.get('PIP_CONFIG_FILE') == os.devnull:
        del env['PIP_CONFIG_FILE']

    subprocess.run([sys.executable, '-m', 'ensurepip', '--upgrade', '--default-pip'], check=True)

    # Python < 3.12 bundles setuptools with ensurepip; get-pip.py --no-setuptools would not install it
    if '--no-setuptools' in sys.argv[1:]:
        subprocess.run([sys.executable, '-m', 'pip', 'uninstall', '--yes', '--quiet', 'setuptools'], env=env, check=False)

    packages = [arg for arg in args if not arg.startswith('-')]

    if not packages:
        return

    result = subprocess.run([sys.executable, '-m', 'pip', 'install'] + args, env=env, check=False)

    if result.returncode != 0:
        sys.stderr.write('offline get-pip: could not install %s, keeping the pip bundled with Python (%s)\n'
                         % (' '.join(packages), ensurepip.version()))


if __name__ == '__main__':
    main()
