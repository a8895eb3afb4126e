"""CI and delivery files, checked offline: the GitHub Actions workflow, the execution environment and the AWX playbook.

Offline and fast: schema validation, `ansible-galaxy collection build`, `ansible-builder create`
(no image is built or pulled), `ansible-playbook --syntax-check`, and structural checks of the YAML.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
WORKFLOW = os.path.join(REPO, ".github", "workflows", "deploy.yml")
EE_FILE = os.path.join(REPO, "execution-environment.yml")
EE_CACHE = os.path.join(REPO, ".cache", "ee")
AWX_PLAYBOOK = os.path.join(REPO, "playbooks", "awx", "configure.yml")
AWX_VARS = os.path.join(REPO, "playbooks", "awx", "vars", "main.yml")
AWX_VAULT = os.path.join(REPO, "playbooks", "awx", "vars", "vault.yml")


def tool(name):
    path = os.path.join(BIN, name)
    assert os.access(path, os.X_OK), "%s is missing from the venv: run `make setup`" % path
    return path


def run(cmd, cwd=REPO, env=None, timeout=120):
    env = dict(os.environ if env is None else env)
    env.setdefault("ANSIBLE_CONFIG", os.path.join(REPO, "ansible.cfg"))
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    env["ANSIBLE_NOCOLOR"] = "1"
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def load(path):
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def galaxy_version():
    return load(os.path.join(REPO, "galaxy.yml"))["version"]


def pins(path):
    """name (lower case) -> 'name==version' line of a pip requirements file."""
    found = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.split("#", 1)[0].strip()
            if "==" in line:
                found[line.split("==", 1)[0].strip().lower()] = line.replace(" ", "")
    return found


# --- GitHub Actions workflow ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def workflow():
    return load(WORKFLOW)


def job_script(job):
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_workflow_validates_against_the_github_workflow_schema():
    proc = run([tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", WORKFLOW])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_workflow_has_the_tiers_and_calls_leanvibe_deploy(workflow):
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads the key `on` as true
    assert "workflow_dispatch" in triggers and "version" in triggers["workflow_dispatch"]["inputs"]
    jobs = workflow["jobs"]
    assert {"tests", "staging", "production", "rollback"} <= set(jobs)

    tests = jobs["tests"]
    assert tests.get("timeout-minutes"), "the tests job needs a timeout"
    assert "make setup" in job_script(tests)
    assert any(step.get("uses", "").startswith("actions/setup-python") and step["with"]["python-version"] == "3.11"
               for step in tests["steps"])

    staging = job_script(jobs["staging"])
    assert re.search(r"leanvibe-deploy canary -i inventories/staging --version \"\$VERSION\"", staging)
    assert re.search(r"leanvibe-deploy probe -i inventories/staging --mode comprehensive", staging)
    production = job_script(jobs["production"])
    assert re.search(r"leanvibe-deploy canary -i inventories/production --version \"\$VERSION\"", production)
    for name in ("staging", "production"):
        script = job_script(jobs[name])
        assert "--json >" in script and "exit-code=$rc" in script, "%s must keep the JSON result and the exit code" % name
        assert jobs[name]["environment"] == name
        assert jobs[name]["outputs"]["exit-code"] == "${{ steps.canary.outputs.exit-code }}"
    rollback = job_script(jobs["rollback"])
    assert "leanvibe-deploy rollback -i inventories/production --emergency" in rollback


def test_workflow_orders_and_guards_the_deployments(workflow):
    jobs = workflow["jobs"]
    needs = jobs["production"]["needs"]
    assert "staging" in (needs if isinstance(needs, list) else [needs])
    assert "refs/heads/main" in jobs["production"]["if"]
    assert "production" in str(jobs["rollback"]["needs"])
    condition = jobs["rollback"]["if"]
    assert "failure()" in condition and "needs.production.outputs.exit-code" in condition

    # One deployment per environment at a time, never cancelled midway; the rollback waits for production's.
    groups = {name: jobs[name]["concurrency"] for name in ("staging", "production", "rollback")}
    assert all(group["cancel-in-progress"] is False for group in groups.values())
    assert groups["staging"]["group"] != groups["production"]["group"] == groups["rollback"]["group"]


def test_workflow_handles_secrets_through_files_only(workflow):
    with open(WORKFLOW, encoding="utf-8") as handle:
        text = handle.read()
    for name in ("staging", "production", "rollback"):
        job = workflow["jobs"][name]
        script = job_script(job)
        assert "ANSIBLE_VAULT_PASSWORD_FILE=" in script and "chmod 600" in script and "umask 077" in script
        secret_steps = [step for step in job["steps"] if "secrets." in str(step.get("env", {}))]
        assert secret_steps, "%s must read the vault password and the SSH key from secrets" % name
        # Secrets reach the scripts through env, never spliced into the script text.
        assert all("secrets." not in step.get("run", "") for step in job["steps"])
    assert not re.search(r"\$ANSIBLE_VAULT;|BEGIN [A-Z ]*PRIVATE KEY", text)


# GitHub's own expression parser and evaluator (npm @actions/expressions), installed by `make static`.
GH_EXPRESSIONS = os.path.join(REPO, ".cache", "npm", "node_modules", "@actions", "expressions", "dist", "index.js")
GH_EXPRESSION_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "github_expression.mjs")


def github_expressions(cases):
    """Answers of tests/static/github_expression.mjs for `cases` (see there), one node run for them all."""
    node = shutil.which("node")
    assert node, "node is missing: run `make static` (it installs nodejs from the OS packages)"
    assert os.path.isfile(GH_EXPRESSIONS), "%s is missing: run `make static`" % GH_EXPRESSIONS
    proc = subprocess.run([node, GH_EXPRESSION_SCRIPT], input=json.dumps({"cases": cases}), capture_output=True, text=True,
                          env=dict(os.environ, GH_EXPRESSIONS_MODULE=GH_EXPRESSIONS), timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def evaluate_if(condition, contexts, status):
    """A job's or step's `if:` as GitHub evaluates it, `status` being what success()/failure()/cancelled() see."""
    return github_expressions([{"condition": condition, "contexts": contexts, "status": status}])[0]


@pytest.mark.parametrize("status, started, exit_code, verify, expected", [
    ("failure", "true", "1", "", False),   # rolled back cleanly: another rollback would go one release too far
    ("failure", "true", "2", "", False),   # usage error, nothing started
    ("failure", "true", "4", "", False),   # another deployment holds the lock
    ("failure", "true", "3", "", True),    # the rollback failed or the state is unknown
    ("failure", "true", "", "", True),     # no exit code: timed out or runner lost mid-canary
    ("cancelled", "true", "", "", True),   # cancelled mid-canary
    ("failure", "", "", "", False),        # production never started (staging failed)
    ("failure", "true", "0", "1", True),   # promoted, then the probes failed
    ("cancelled", "true", "0", "", False),  # promoted, cancelled before the probes ended
    ("success", "true", "0", "0", False),
])
def test_rollback_job_runs_only_when_production_is_not_on_a_known_stable_release(workflow, status, started, exit_code, verify, expected):
    production = {"outputs": {"started": started, "exit-code": exit_code, "verify-exit-code": verify}}
    assert evaluate_if(workflow["jobs"]["rollback"]["if"], {"needs": {"production": production}}, status) is expected


@pytest.mark.parametrize("exit_code, expected", [("1", False), ("2", False), ("4", False), ("3", True), ("", True)])
def test_staging_emergency_rollback_step_skips_a_clean_rollback(workflow, exit_code, expected):
    step = next(step for step in workflow["jobs"]["staging"]["steps"]
                if "leanvibe-deploy rollback" in step.get("run", ""))
    contexts = {"steps": {"start": {"outputs": {"started": "true"}}, "canary": {"outputs": {"exit-code": exit_code}}}}
    assert evaluate_if(step["if"], contexts, "failure") is expected


# Contexts GitHub allows in each place (docs: "Contexts reference", context availability); steps allow all.
CONTEXTS = {
    "workflow env": {"github", "secrets", "inputs", "vars"},
    "workflow concurrency": {"github", "inputs", "vars"},
    "job if": {"github", "needs", "vars", "inputs"},
    "job env": {"github", "needs", "strategy", "matrix", "vars", "secrets", "inputs"},
    "job concurrency": {"github", "needs", "strategy", "matrix", "inputs", "vars"},
    "job environment": {"github", "needs", "strategy", "matrix", "vars", "inputs"},
    "job outputs": {"github", "needs", "strategy", "matrix", "job", "runner", "env", "vars", "secrets", "steps", "inputs"},
}


def expressions_in(value, bare=False):
    """The expressions of a field: its `${{ ... }}` parts, or the whole text for an `if` written without them."""
    if bare:
        return [str(value)]
    if isinstance(value, dict):
        return [text for item in value.values() for text in expressions_in(item)]
    return re.findall(r"\$\{\{(.*?)\}\}", str(value), re.S)


def test_workflow_uses_contexts_only_where_github_provides_them(workflow):
    cases = []

    def check(place, value, bare=False):
        cases.extend({"place": place, "expression": text, "allowed": sorted(CONTEXTS[place])} for text in expressions_in(value, bare))

    check("workflow env", workflow.get("env", {}))
    check("workflow concurrency", workflow.get("concurrency", {}))
    for job in workflow["jobs"].values():
        if "if" in job:
            check("job if", job["if"], bare=not str(job["if"]).lstrip().startswith("${{"))
        for key, place in (("env", "job env"), ("concurrency", "job concurrency"), ("environment", "job environment"),
                           ("outputs", "job outputs")):
            check(place, job.get(key, {}))
    assert cases, "no expressions found in the workflow"
    errors = github_expressions([{"expression": case["expression"], "allowed": case["allowed"]} for case in cases])
    wrong = ["%s: %s (%s)" % (case["place"], case["expression"].strip(), error) for case, error in zip(cases, errors) if error]
    assert not wrong, "contexts GitHub does not provide there: %s" % wrong


def test_workflow_scripts_take_untrusted_values_through_env_only(workflow):
    for name, job in workflow["jobs"].items():
        for step in job["steps"]:
            assert "${{" not in step.get("run", ""), "%s / %s: pass expressions through env" % (name, step.get("name"))


RESULT_SCHEMA = os.path.join(REPO, "python_runner", "leanvibe_runner", "result.schema.json")


def sample_result(**changes):
    """A leanvibe-deploy --json result; checked against the runner's JSON Schema."""
    result = {
        "schema_version": 1, "command": "canary", "status": "rolled_back", "exit_code": 1, "version": "2.1.0",
        "from_version": "2.0.0", "rolled_back": True, "reasons": ["canary 5xx rate 28.6 % over 140 requests > limit 1.0 %"],
        "steps": [{"weight": 10, "verdict": "pass", "probes": "pass", "analysis": "pass", "reasons": []},
                  {"weight": 25, "verdict": "fail", "probes": "pass", "analysis": "fail", "reasons": ["5xx"]}],
        "duration_s": 42.5, "artifact_dir": "/tmp/runner", "inventory": "inventories/production", "rollback_ms": 850,
        "cancelled": False, "lock_held_by": None, "details": {},
    }
    result.update(changes)
    jsonschema = pytest.importorskip("jsonschema")
    with open(RESULT_SCHEMA, encoding="utf-8") as handle:
        jsonschema.validate(result, json.load(handle))
    return result


@pytest.fixture
def jq():
    """The workflow's steps use jq, as on GitHub's runners; the set-up installs it (`make static`)."""
    assert shutil.which("jq"), "jq is missing: run `make static`, which installs it from the OS packages"


def step_named(job, fragment):
    return next(step for step in job["steps"] if fragment in step.get("name", ""))


def run_step(step, tmp_path, job_env=None, **env):
    """A step's `run` script as GitHub runs it (bash -e -o pipefail), with the files GitHub provides."""
    script = tmp_path / "step.sh"
    script.write_text(step["run"], encoding="utf-8")
    base = {"PATH": str(tmp_path / "bin") + os.pathsep + os.environ.get("PATH", ""), "HOME": str(tmp_path / "home"),
            "RUNNER_TEMP": str(tmp_path / "runner"), "GITHUB_OUTPUT": str(tmp_path / "output"),
            "GITHUB_ENV": str(tmp_path / "env"), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
            "RUN_URL": "https://github.invalid/run/1"}
    for folder in ("bin", "home", "runner", "results"):
        (tmp_path / folder).mkdir(exist_ok=True)
    base.update({k: v for k, v in (job_env or {}).items() if "${{" not in v}, RESULTS=str(tmp_path / "results"))
    base.update(env)
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], env=base, cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=30, check=False)


def fake_leanvibe_deploy(tmp_path, result, rc):
    """A stand-in for the CLI: records its arguments, prints `result` as --json does, exits `rc`."""
    (tmp_path / "bin").mkdir(exist_ok=True)
    text = result if isinstance(result, str) else json.dumps(result, indent=2)
    (tmp_path / "result.json").write_text(text, encoding="utf-8")
    fake = tmp_path / "bin" / "leanvibe-deploy"
    fake.write_text('#!/bin/sh\necho "$@" >> "%s"\ncat "%s"\nexit %d\n'
                    % (tmp_path / "argv", tmp_path / "result.json", rc), encoding="utf-8")
    fake.chmod(0o755)


def outputs(tmp_path):
    lines = (tmp_path / "output").read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines)


@pytest.mark.usefixtures("jq")
@pytest.mark.parametrize("rc, steps", [(0, "10,25,50,100"), (1, ""), (3, "5,100")])
def test_production_canary_step_keeps_exit_code_and_one_line_json(workflow, tmp_path, rc, steps):
    result = sample_result(exit_code=rc, **({"status": "promoted", "rolled_back": False, "rollback_ms": None}
                                            if rc == 0 else {"status": "rollback_failed"} if rc == 3 else {}))
    fake_leanvibe_deploy(tmp_path, result, rc)
    job = workflow["jobs"]["production"]
    proc = run_step(step_named(job, "Canary release"), tmp_path, VERSION="2.1.0", CANARY_STEPS=steps)
    assert proc.returncode == rc, proc.stderr
    found = outputs(tmp_path)
    assert found["exit-code"] == str(rc)
    assert json.loads(found["result"]) == result
    argv = (tmp_path / "argv").read_text(encoding="utf-8")
    # No --steps without the dispatch input: the inventory's canary_steps apply.
    assert argv.startswith("canary -i inventories/production --version 2.1.0 " + ("--steps %s " % steps if steps else "--artifact-dir"))
    assert argv.rstrip().endswith("--json")


@pytest.mark.usefixtures("jq")
@pytest.mark.parametrize("job_name", ["staging", "production"])
def test_a_crash_without_json_counts_as_unknown_state_not_as_a_clean_rollback(workflow, tmp_path, job_name):
    fake_leanvibe_deploy(tmp_path, "Traceback (most recent call last):\n  ...\nRuntimeError: boom\n", 1)
    proc = run_step(step_named(workflow["jobs"][job_name], "Canary release"), tmp_path, VERSION="2.1.0", CANARY_STEPS="")
    assert proc.returncode == 3, proc.stderr
    assert outputs(tmp_path)["exit-code"] == "3"
    assert outputs(tmp_path)["result"] == "{}"


@pytest.mark.usefixtures("jq")
def test_summary_step_renders_the_json_result(workflow, tmp_path):
    job = workflow["jobs"]["production"]
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "production-canary.json").write_text(json.dumps(sample_result()), encoding="utf-8")
    (tmp_path / "results" / "production-probe.json").write_text("not json", encoding="utf-8")
    proc = run_step(step_named(job, "Summary"), tmp_path, VERSION="2.1.0")
    assert proc.returncode == 0, proc.stderr
    summary = (tmp_path / "summary").read_text(encoding="utf-8")
    assert "### Production canary of 2.1.0: rolled_back (exit code 1)" in summary
    assert "| steps | 10 % pass → 25 % fail |" in summary
    assert "| rolled back | true in 850 ms |" in summary
    assert "- canary 5xx rate 28.6 % over 140 requests > limit 1.0 %" in summary
    assert "### Production probes: no JSON result" in summary


@pytest.mark.parametrize("job_name", ["staging", "production", "rollback"])
def test_secret_files_are_private_and_handed_over_by_path(workflow, tmp_path, job_name):
    step = step_named(workflow["jobs"][job_name], "vault password")
    proc = run_step(step, tmp_path, VAULT_PASSWORD="s3cret", SSH_PRIVATE_KEY="-----KEY-----", SSH_KNOWN_HOSTS="h ssh-ed25519 AAAA")
    assert proc.returncode == 0, proc.stderr
    handed = dict(line.split("=", 1) for line in (tmp_path / "env").read_text(encoding="utf-8").splitlines())
    vault_file, key_file = handed["ANSIBLE_VAULT_PASSWORD_FILE"], handed["ANSIBLE_PRIVATE_KEY_FILE"]
    assert open(vault_file, encoding="utf-8").read().strip() == "s3cret"
    for path in (vault_file, key_file, str(tmp_path / "home" / ".ssh" / "known_hosts")):
        assert os.stat(path).st_mode & 0o777 == 0o600, path
    assert "s3cret" not in proc.stdout + proc.stderr

    proc = run_step(step, tmp_path / "home", VAULT_PASSWORD="", SSH_PRIVATE_KEY="k", SSH_KNOWN_HOSTS="h")
    assert proc.returncode == 2 and "VAULT_PASSWORD" in proc.stdout


# --- Execution environment -----------------------------------------------------------------------

def test_execution_environment_pins_match_the_repository():
    ee = load(EE_FILE)
    assert ee["version"] == 3
    repo_pins = pins(os.path.join(REPO, "requirements.txt"))
    ee_pins = pins(os.path.join(REPO, ee["dependencies"]["python"]))
    for name in ("requests", "websocket-client", "jinja2"):
        assert ee_pins.get(name) == repo_pins[name].replace(repo_pins[name].split("==")[0], name), name
    assert ee["dependencies"]["ansible_core"]["package_pip"] == repo_pins["ansible-core"]
    assert ee["dependencies"]["ansible_runner"]["package_pip"] == repo_pins["ansible-runner"]
    # The collection's own requirements.txt is the development tree: the EE must not install it.
    assert "leanvibe.deploy" in ee["dependencies"]["exclude"]["all_from_collections"]
    galaxy = load(os.path.join(REPO, ee["dependencies"]["galaxy"]))
    assert [c["name"] for c in galaxy["collections"]] == ["collections/leanvibe-deploy-%s.tar.gz" % galaxy_version()]


@pytest.fixture(scope="module")
def collection_tarball():
    """`ansible-galaxy collection build` into .cache/ee/, where execution-environment.yml takes it from."""
    os.makedirs(EE_CACHE, exist_ok=True)
    for name in os.listdir(EE_CACHE):
        if name.startswith("leanvibe-deploy-") and name.endswith(".tar.gz"):
            os.unlink(os.path.join(EE_CACHE, name))
    proc = run([tool("ansible-galaxy"), "collection", "build", "--output-path", EE_CACHE, "--force"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    path = os.path.join(EE_CACHE, "leanvibe-deploy-%s.tar.gz" % galaxy_version())
    assert os.path.isfile(path), os.listdir(EE_CACHE)
    return path


def test_collection_tarball_holds_the_collection_and_no_local_runtime(collection_tarball):
    with tarfile.open(collection_tarball) as archive:
        names = archive.getnames()
    for required in ("MANIFEST.json", "FILES.json", "meta/runtime.yml", "plugins/modules/slot_release.py",
                     "roles/nginx_lb/tasks/main.yml", "playbooks/canary.yml"):
        assert required in names, required
    leaked = [name for name in names
              if name.split("/")[0] in (".venv", ".collections", ".run", ".cache", ".git")
              or name.startswith("tests/output/") or name.endswith(".tar.gz")]
    assert not leaked, leaked


def _copy_of_repo(target):
    heavy = {".venv", ".collections", ".run", ".cache", ".git", ".pytest_cache"}
    shutil.copytree(REPO, target, symlinks=True,
                    ignore=lambda folder, names: [n for n in names if (folder == REPO and n in heavy) or n == "__pycache__"])


def _build_copy_with(tmp_path, planted):
    """Build the collection from a copy of the repository holding the `planted` files: the tarball's members."""
    source = tmp_path / "src"
    _copy_of_repo(str(source))
    for relative in planted:
        path = source / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("planted by test_ci_files\n", encoding="utf-8")
    out = tmp_path / "out"
    proc = run([tool("ansible-galaxy"), "collection", "build", str(source), "--output-path", str(out)], cwd=str(source))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with tarfile.open(str(out / ("leanvibe-deploy-%s.tar.gz" % galaxy_version()))) as archive:
        return archive.getnames()


def test_build_ignore_leaves_out_the_local_runtime(tmp_path):
    planted = [".venv/bin/python", ".collections/ansible_collections/x", ".run/nginx/nginx.pid", ".cache/ee/x.txt",
               "tests/output/junit.xml", "dist/leanvibe-demo-1.0.0.tar.gz"]
    names = _build_copy_with(tmp_path, planted)
    assert not [path for path in planted if path in names]


def test_build_ignore_leaves_out_python_build_output(tmp_path):
    planted = ["python_runner/leanvibe_runner.egg-info/PKG-INFO", "python_runner/build/lib/leanvibe_runner/cli.py",
               "monitor/leanvibe_monitor.egg-info/PKG-INFO", "monitor/build/lib/leanvibe_monitor/app.py"]
    names = _build_copy_with(tmp_path, planted)
    leaked = [path for path in planted if path in names]
    assert not leaked, "add '*.egg-info', 'python_runner/build' and 'monitor/build' to build_ignore in galaxy.yml: %s" % leaked


def test_ansible_builder_creates_the_context_offline(collection_tarball, tmp_path):
    context = tmp_path / "context"
    proc = run([tool("ansible-builder"), "create", "-f", EE_FILE, "--context", str(context),
                "--output-filename", "Containerfile"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    containerfile = (context / "Containerfile").read_text(encoding="utf-8")
    ee = load(EE_FILE)
    assert 'EE_BASE_IMAGE="%s"' % ee["images"]["base_image"]["name"] in containerfile
    assert ee["dependencies"]["ansible_core"]["package_pip"] in containerfile
    tarball = context / "_build" / "collections" / os.path.basename(collection_tarball)
    assert tarball.is_file(), sorted(str(p.relative_to(context)) for p in context.rglob("*"))
    assert "leanvibe.deploy" in (context / "_build" / "exclude-collections.txt").read_text(encoding="utf-8")

    # The galaxy stage, as the Containerfile runs it (WORKDIR /build = _build): the tarball installs offline.
    # The repository's settings (collections_path = .collections) stay out of it: an empty ansible.cfg.
    (tmp_path / "ansible.cfg").write_text("[defaults]\n", encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    env.update(ANSIBLE_CONFIG=str(tmp_path / "ansible.cfg"), ANSIBLE_GALAXY_DISABLE_GPG_VERIFY="1",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"), HOME=str(tmp_path))
    installed = tmp_path / "collections"
    proc = run([tool("ansible-galaxy"), "collection", "install", "-r", "requirements.yml", "--collections-path",
                str(installed)], cwd=str(context / "_build"), env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = installed / "ansible_collections" / "leanvibe" / "deploy" / "MANIFEST.json"
    assert manifest.is_file(), proc.stdout


# --- AWX configuration playbook ------------------------------------------------------------------

def test_awx_playbook_passes_syntax_check():
    proc = run([tool("ansible-playbook"), "--syntax-check", AWX_PLAYBOOK],
               env=dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg")))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def awx():
    plays = load(AWX_PLAYBOOK)
    assert len(plays) == 1
    play = plays[0]
    settings = dict(load(AWX_VARS), **play.get("vars", {}))

    def resolve(value):
        """'{{ name }}' -> the setting's value (one level, as the tests need)."""
        match = re.fullmatch(r"\{\{\s*(\w+)\s*\}\}", value) if isinstance(value, str) else None
        return settings[match.group(1)] if match else value

    tasks = {}
    for task in play["tasks"]:
        module = next(key for key in task if "." in key)
        tasks.setdefault(module, []).append(task)
    return play, tasks, resolve


def test_awx_playbook_uses_fqcn_vars_files_and_a_vaulted_token(awx):
    play, tasks, resolve = awx
    assert all(module.startswith(("awx.awx.", "ansible.builtin.")) for module in tasks)
    assert play["vars_files"] == ["vars/main.yml", "vars/vault.yml"]
    defaults = play["module_defaults"]["group/awx.awx.controller"]
    assert defaults["controller_oauthtoken"] == "{{ awx_controller_oauthtoken }}"
    assert load(AWX_VARS)["awx_controller_oauthtoken"] == "{{ vault_awx_controller_oauthtoken }}"
    assert all(task.get("no_log") is True for task in tasks["awx.awx.credential"])

    class VaultLoader(yaml.SafeLoader):
        pass

    VaultLoader.add_constructor("!vault", lambda loader, node: ("vault", loader.construct_scalar(node)))
    with open(AWX_VAULT, encoding="utf-8") as handle:
        secrets = yaml.load(handle, Loader=VaultLoader)  # noqa: S506 - a SafeLoader subclass
    assert "vault_awx_controller_oauthtoken" in secrets
    for name, value in secrets.items():
        assert isinstance(value, tuple) and value[1].startswith("$ANSIBLE_VAULT;1.2;AES256;awx"), name


def test_awx_inventories_come_from_the_repository(awx):
    _play, tasks, resolve = awx
    (source,) = [task["awx.awx.inventory_source"] for task in tasks["awx.awx.inventory_source"]]
    assert source["source"] == "scm" and resolve(source["source_project"]) == "leanvibe deploy"
    assert source["source_path"] == "{{ item.source_path }}"
    environments = {env["name"]: env for env in load(AWX_VARS)["awx_environments"]}
    assert set(environments) == {"staging", "production"}
    for name, env in environments.items():
        assert env["source_path"].startswith("inventories/%s/" % name)
        assert os.path.isfile(os.path.join(REPO, env["source_path"])), env["source_path"]
        assert env["vault_password"].startswith("{{ vault_") and env["ssh_private_key"].startswith("{{ vault_")


def test_awx_playbook_declares_the_job_templates_and_the_canary_survey(awx):
    _play, tasks, resolve = awx
    templates = {resolve(task["awx.awx.job_template"]["name"]): task["awx.awx.job_template"]
                 for task in tasks["awx.awx.job_template"]}
    assert {name: t["playbook"] for name, t in templates.items()} == {
        "leanvibe canary": "playbooks/canary.yml",
        "leanvibe rollback": "playbooks/rollback.yml",
        "leanvibe probes": "playbooks/probes.yml",
    }
    for name, template in templates.items():
        assert template["ask_inventory_on_launch"] is True, name
        assert resolve(template["project"]) == "leanvibe deploy"
        assert os.path.isfile(os.path.join(REPO, template["playbook"])), template["playbook"]
    assert templates["leanvibe rollback"]["ask_variables_on_launch"] is True  # the workflow passes emergency=true

    canary = templates["leanvibe canary"]
    assert canary["survey_enabled"] is True
    questions = {q["variable"]: q for q in resolve(canary["survey_spec"]["spec"])}
    version = questions["app_version"]
    assert version["required"] is True and version["type"] == "text"
    assert 1 <= version["min"] < version["max"] <= 64
    assert questions["canary_steps"]["required"] is False


def test_awx_release_workflow_goes_staging_then_production_then_rollback_on_failure(awx):
    _play, tasks, resolve = awx
    (workflow,) = [task["awx.awx.workflow_job_template"] for task in tasks["awx.awx.workflow_job_template"]]
    assert resolve(workflow["name"]) == "leanvibe release"
    assert "app_version" in {q["variable"] for q in resolve(workflow["survey_spec"]["spec"])}
    nodes = {node["identifier"]: node for node in workflow["workflow_nodes"]}

    def template(node):
        return resolve(node["unified_job_template"]["name"])

    def edges(node, kind):
        return [edge["identifier"] for edge in node.get("related", {}).get(kind, [])]

    starts = [n for n in nodes if not any(n in edges(o, k) for o in nodes.values()
                                          for k in ("success_nodes", "failure_nodes", "always_nodes"))]
    assert len(starts) == 1
    staging = nodes[starts[0]]
    assert template(staging) == "leanvibe canary" and "staging" in staging["inventory"]["name"]
    (production_id,) = edges(staging, "success_nodes")
    assert not edges(staging, "failure_nodes")
    production = nodes[production_id]
    assert template(production) == "leanvibe canary" and "production" in production["inventory"]["name"]
    (rollback_id,) = edges(production, "failure_nodes")
    rollback = nodes[rollback_id]
    assert template(rollback) == "leanvibe rollback" and "production" in rollback["inventory"]["name"]
    assert rollback["extra_data"]["emergency"] is True
    assert workflow["destroy_current_nodes"] is True
