"""leanvibe-monitor is a distribution of its own: it declares no Ansible dependency and runs without one."""

import json
import subprocess
import sys
import tomllib

from monitor_test_helpers import COLLECTIONS_PATH, REPO_ROOT, config_dict, env_dict

# Blocked in the child: an import of any of them fails, as on a host that never installed them.
ABSENT = ("ansible", "ansible_runner", "leanvibe_runner", "rich")


def test_the_distribution_declares_no_ansible():
    project = tomllib.loads((REPO_ROOT / "monitor" / "pyproject.toml").read_text())["project"]
    assert project["name"] == "leanvibe-monitor"
    assert project["scripts"] == {"leanvibe-monitor": "leanvibe_monitor.__main__:main"}
    names = [dep.split(">")[0].split("=")[0].split("[")[0].strip().lower() for dep in project["dependencies"]]
    assert not [name for name in names if name.startswith("ansible")]


def test_the_service_imports_and_checks_a_config_without_ansible(tmp_path):
    path = tmp_path / "monitor.json"
    path.write_text(json.dumps(config_dict([env_dict("local", "http://127.0.0.1:9")], collections_path=COLLECTIONS_PATH)))
    code = (
        "import sys\n"
        "for name in %r: sys.modules[name] = None\n"
        "import leanvibe_monitor.app, leanvibe_monitor.__main__\n"
        "sys.exit(leanvibe_monitor.__main__.main(['--check', '--config', %r]))\n" % (ABSENT, str(path)))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                            check=False)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith("leanvibe-monitor: %s is valid" % path)
