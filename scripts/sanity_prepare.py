"""Prepare an offline-capable `ansible-test sanity` run (used by scripts/ansible-test-sanity.sh).

1. Install scripts/sanity_get_pip.py as the get-pip script that ansible-test looks
   for in ~/.ansible/test/cache, so `--venv` never downloads it.
2. Build the collection tarball (`ansible-galaxy collection build`, galaxy.yml's
   build_ignore applies) and sync its content into <dest>, which must end in
   ansible_collections/<namespace>/<name>: sanity checks what ships, as Galaxy and
   Automation Hub check it, and ansible-test only works from there.

Usage: python sanity_prepare.py <repo root> <dest>
Run it with the interpreter that has ansible-core (ansible_test) installed.
"""

import filecmp
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

# Kept in <dest> between runs: ansible-test's results and cached virtual environments,
# and the (empty) git repository created by init_git().
PRESERVED = ('tests/output', '.git')

MARKER = 'LEANVIBE-OFFLINE-GET-PIP'


def bootstrap_pip_version():
    """Return the pip version ansible-test bootstraps into its Python 3 venvs."""
    try:
        from types import SimpleNamespace
        from ansible_test._internal.python_requirements import get_venv_packages

        version = '%d.%d' % sys.version_info[:2]
        return get_venv_packages(SimpleNamespace(version=version))['pip']
    except Exception as ex:  # fall back to reading the source if the internal API moved
        import ansible_test

        source = os.path.join(os.path.dirname(ansible_test.__file__), '_internal', 'python_requirements.py')
        with open(source, encoding='utf-8') as handle:
            match = re.search(r"\bpip='([0-9.]+)'", handle.read())
        if not match:
            raise SystemExit('cannot find the pip version ansible-test bootstraps (%s)' % ex)
        return match.group(1)


def install_get_pip(stand_in):
    pip_version = bootstrap_pip_version()
    # same expression as ansible_test/_util/target/setup/requirements.py bootstrap()
    cache_path = os.path.expanduser('~/.ansible/test/cache/get_pip_%s.py' % pip_version.replace('.', '_'))

    if os.path.exists(cache_path):
        with open(cache_path, encoding='utf-8', errors='replace') as handle:
            ours = MARKER in handle.read()
        if not ours:
            print('sanity: keeping existing get-pip script %s' % cache_path)
            return
        if filecmp.cmp(stand_in, cache_path, shallow=False):
            return

    os.makedirs(os.path.dirname(cache_path), exist_ok=True)
    shutil.copyfile(stand_in, cache_path + '.tmp')
    os.replace(cache_path + '.tmp', cache_path)
    print('sanity: installed offline get-pip stand-in as %s' % cache_path)


def build_tarball(repo, folder):
    """`ansible-galaxy collection build` of <repo> into <folder>; returns the tarball's path."""
    ansible_galaxy = os.path.join(os.path.dirname(sys.executable), 'ansible-galaxy')
    subprocess.run([ansible_galaxy, 'collection', 'build', repo, '--output-path', folder, '--force'],
                   check=True, stdout=subprocess.DEVNULL)
    built = [name for name in os.listdir(folder) if name.endswith('.tar.gz')]
    if len(built) != 1:
        raise SystemExit('expected one collection tarball in %s, found %s' % (folder, built))
    return os.path.join(folder, built[0])


def extract(tarball, folder):
    """Extract the tarball into <folder>; returns the relative paths of its files and links."""
    with tarfile.open(tarball) as archive:
        members = [member for member in archive.getmembers() if not member.isdir()]
        archive.extractall(folder, filter='data')
    return {member.name for member in members}


def same(src, dst):
    if os.path.islink(src) or os.path.islink(dst):
        return os.path.islink(src) and os.path.islink(dst) and os.readlink(src) == os.readlink(dst)
    if not os.path.isfile(dst):
        return False
    if os.stat(src).st_mode != os.stat(dst).st_mode:
        return False
    return filecmp.cmp(src, dst, shallow=False)


def remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def sync(source, files, dest):
    """Make <dest> hold exactly <files> (relative paths) of <source>, keeping PRESERVED."""
    parts = os.path.normpath(dest).split(os.sep)
    if len(parts) < 3 or parts[-3] != 'ansible_collections':
        raise SystemExit('destination must end in ansible_collections/<namespace>/<name>: %s' % dest)

    files = {path for path in files if not any(path == keep or path.startswith(keep + '/') for keep in PRESERVED)}
    os.makedirs(dest, exist_ok=True)

    # delete what is no longer part of the collection; never descend into PRESERVED
    visited_dirs = []
    for root, dirs, names in os.walk(dest, topdown=True):
        rel_root = os.path.relpath(root, dest)
        rel_root = '' if rel_root == '.' else rel_root + '/'
        for name in list(dirs):
            rel = rel_root + name
            if rel in PRESERVED:
                dirs.remove(name)
            elif os.path.islink(os.path.join(root, name)):
                dirs.remove(name)
                if rel not in files:
                    os.unlink(os.path.join(root, name))
            else:
                visited_dirs.append(os.path.join(root, name))
        for name in names:
            if rel_root + name not in files:
                os.unlink(os.path.join(root, name))

    for path in reversed(visited_dirs):  # children before parents
        if not os.listdir(path):
            os.rmdir(path)

    copied = 0
    for rel in sorted(files):
        src = os.path.join(source, rel)
        dst = os.path.join(dest, rel)
        if same(src, dst):
            continue
        if os.path.lexists(dst) or os.path.isdir(dst):
            remove(dst)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if os.path.islink(src):
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)
        copied += 1

    print('sanity: %s holds the %d files of the collection tarball (%d updated)' % (dest, len(files), copied))
    return files


def init_git(dest, files):
    """Make <dest> a git work tree of its own, listing exactly the synced files.

    ansible-test walks up from the collection root looking for a `.git`; without one
    here it finds the enclosing checkout, whose `git ls-files` ignores .cache/, and
    then reports 'All targets skipped'.  ansible-test lists
    `git ls-files --cached --others --exclude-standard`, so the synced files are
    staged (forced, in case a tracked file matches .gitignore) into a fresh index
    and ansible-test's own output is excluded.  Nothing is ever committed.
    """
    git_dir = os.path.join(dest, '.git')
    # explicit --git-dir/--work-tree: git must never fall back to the enclosing checkout
    git = ['git', '--git-dir=' + git_dir, '--work-tree=' + dest]

    valid = subprocess.run(git + ['rev-parse', '--git-dir'], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False).returncode == 0
    if not valid:
        if os.path.lexists(git_dir):
            remove(git_dir)
        subprocess.run(['git', 'init', '--quiet', dest], check=True)

    # what ansible-test (and any git command run inside the copy) will see
    toplevel = subprocess.run(['git', '-C', dest, 'rev-parse', '--show-toplevel'],
                              stdout=subprocess.PIPE, check=True).stdout.decode().strip()
    if os.path.realpath(toplevel) != os.path.realpath(dest):
        raise SystemExit('git resolves %s to the work tree %s, not to itself' % (dest, toplevel))

    os.makedirs(os.path.join(git_dir, 'info'), exist_ok=True)
    with open(os.path.join(git_dir, 'info', 'exclude'), 'w', encoding='utf-8') as handle:
        handle.write('/tests/output/\n')

    index = os.path.join(git_dir, 'index')
    if os.path.exists(index):
        os.unlink(index)
    subprocess.run(git + ['add', '--force', '--pathspec-from-file=-', '--pathspec-file-nul'],
                   cwd=dest, input='\0'.join(sorted(files)).encode('utf-8', 'surrogateescape'), check=True)


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    repo, dest = (os.path.abspath(arg) for arg in sys.argv[1:])
    install_get_pip(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'sanity_get_pip.py'))
    with tempfile.TemporaryDirectory(prefix='leanvibe-sanity-') as work:
        tarball = build_tarball(repo, os.path.join(work, 'build'))
        content = os.path.join(work, 'content')
        files = extract(tarball, content)
        files = sync(content, files, dest)
    init_git(dest, files)


if __name__ == '__main__':
    main()
