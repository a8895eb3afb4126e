"""Bad input, one matrix: every case through the real playbooks (and leanvibe-deploy where it applies).

Each case must fail (rc != 0; leanvibe-deploy exits 2 for a usage or configuration error, 1 for failed probes; the
synthetic_probe module reports passed: false, as it fails only on bad arguments), answer with one clear
sentence whose words the case names, and change nothing: the bytes of the nginx config dir (the weights file
included), of the state dir (the ledger) and of the slot files, the weights live in nginx, nginx's workers (no
reload) and the version the LB serves are the same after the case as before it.

The module's environment is brought up by site.yml: 1.0.0 on blue, green idle, one release in the ledger.
"""

import collections
import contextlib
import http.server
import json
import os
import re
import socket
import socketserver
import subprocess
import threading

import pytest

from conftest import BIN, PORT_BASE, REPO, SLOT_PORTS, other_color, read_bytes, write_bytes

CLI = os.path.join(BIN, "leanvibe-deploy")
# A port of this run's range for the garbage-answering probe target.
GARBAGE_PORT = PORT_BASE + 10
NO_BUILD = {"app_artifact_build_command": []}
# Words that never belong in the sentence a user gets.
NOISE = ("Traceback", "Task failed", "object of type", "Unexpected", "HostVarsVars", "is undefined", "has no attribute")


# --- set-ups: each yields what the case's arguments need ------------------------------------------------------------------

@contextlib.contextmanager
def corrupt_ledger(env, _tmp, data):
    """The ledger replaced by `data` for the case; the original bytes are put back afterwards."""
    path = env.ledger_path
    original = read_bytes(path)
    write_bytes(path, data)
    try:
        yield {}
        # The tool refused the ledger: it must not have rewritten it either.
        assert read_bytes(path) == data
    finally:
        write_bytes(path, original)
    assert read_bytes(path) == original


@contextlib.contextmanager
def busy_idle_port(env, _tmp):
    """A stranger listens on the idle color's port."""
    port = SLOT_PORTS[other_color(env.read_ledger()["active_color"])]
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        blocker.bind(("127.0.0.1", port))
        blocker.listen(1)
        yield {"port": port}
    finally:
        blocker.close()


@contextlib.contextmanager
def recorded_release(env, _tmp, version="0.9.0"):
    """An earlier release in the ledger's history that is warm in no color (so a rollback must redeploy it)."""
    path = env.ledger_path
    original = read_bytes(path)
    rc, out = env.deployment_state("record", outcome="deployed", deployment={"type": "deploy", "version": version},
                                   reasons=["an earlier release, for the bad-input matrix"])
    assert rc == 0, out
    try:
        yield {"version": version}
    finally:
        write_bytes(path, original)


@contextlib.contextmanager
def inventory_without_lb(_env, tmp):
    """The local inventory with its LB group named `loadbalancers`: playbooks that target lb find no host."""
    folder = tmp / "inventory-without-lb"
    (folder / "group_vars").mkdir(parents=True)
    with open(os.path.join(REPO, "inventories", "local", "group_vars", "all.yml"), encoding="utf-8") as handle:
        group_vars = re.sub(r"(?m)^leanvibe_root:.*$", "leanvibe_root: %s" % REPO, handle.read())
    (folder / "group_vars" / "all.yml").write_text(group_vars, encoding="utf-8")
    (folder / "hosts.yml").write_text(
        "all:\n  children:\n    loadbalancers:\n      hosts:\n        lb-local:\n    app:\n      hosts:\n        app-local:\n",
        encoding="utf-8")
    yield {"inventory": str(folder)}


class _Garbage(http.server.BaseHTTPRequestHandler):
    mode = "html"

    def _answer(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.mode == "html":
            status, kind, body = 200, "text/html", b"<html><body>It works!</body></html>"
        else:  # JSON, but not what the service answers
            status, kind, body = (200 if self.command == "GET" else 201), "application/json", b'{"status": "ok", "id": null}'
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, *_args):
        pass


class _NotHttp(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.recv(65536)
        self.request.sendall(b"\x00\xffgarbage, not HTTP\r\n\r\n")


class _Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    daemon_threads = True


@contextlib.contextmanager
def garbage_target(_env, _tmp, mode):
    """A local server on GARBAGE_PORT that answers every path with garbage: HTML, the wrong JSON, or not HTTP."""
    if mode == "raw":
        handler = _NotHttp
    else:
        handler = type("Garbage_" + mode, (_Garbage,), {"mode": mode})
    server = _Server(("127.0.0.1", GARBAGE_PORT), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield {"url": "http://127.0.0.1:%d" % GARBAGE_PORT}
    finally:
        server.shutdown()
        server.server_close()


# --- the cases -----------------------------------------------------------------------------------------------------------

Case = collections.namedtuple("Case", "kind target args words setup exit_code")
Case.__new__.__defaults__ = (None, None)


def playbook(name, args, words, setup=None):
    """ansible-playbook playbooks/<name> with `args` (a JSON object for -e, a list, or a callable of the set-up's values)."""
    return Case("playbook", name, args, words, setup)


def module(host, name, args, words, setup=None):
    return Case("module", (host, name), args, words, setup)


def cli(args, words, exit_code=2, setup=None):
    return Case("cli", None, args, words, setup, exit_code)


def steps(value):
    return {"app_version": "4.0.0", "canary_steps": value}


VERSION_WORDS = ["app_version must be given", "without path separators or spaces"]
TARGET_WORDS = ["target_version must be letters, digits", "without path separators or spaces"]
CLI_VERSION_WORDS = ["must be letters, digits", "without path separators or spaces"]


def ledger_corrupt(detail):
    return ["demo.ledger.json is corrupt (%s" % detail, "fix it or move it away"]


CASES = {
    # -- weights out of range: the nginx_lb weights entry point and nginx_upstream itself
    "weights 150 via the weights entry point": playbook(
        "tests/integration/playbooks/flip_weights.yml", {"blue_weights": [150]}, ["weight of blue is 150, outside 0 to 100."]),
    "weights -5 via the weights entry point": playbook(
        "tests/integration/playbooks/flip_weights.yml", {"blue_weights": [-5]}, ["weight of blue is -5, outside 0 to 100."]),
    "weights 150 via nginx_upstream": module(
        "lb-local", "leanvibe.deploy.nginx_upstream", lambda env, _ctx: {
            "app": "demo", "weights": {"blue": 150, "green": -50}, "conf_dir": env.path("nginx", "conf")},
        ["weight of blue is 150, outside 0 to 100."]),
    "weights -5 via nginx_upstream": module(
        "lb-local", "leanvibe.deploy.nginx_upstream", lambda env, _ctx: {
            "app": "demo", "weights": {"blue": -5, "green": 105}, "conf_dir": env.path("nginx", "conf")},
        ["weight of blue is -5, outside 0 to 100."]),
    "weights that sum to 120 via nginx_upstream": module(
        "lb-local", "leanvibe.deploy.nginx_upstream", lambda env, _ctx: {
            "app": "demo", "weights": {"blue": 60, "green": 60}, "conf_dir": env.path("nginx", "conf")},
        ["weights must sum to 100, these sum to 120."]),
    "weight of an unknown color via nginx_upstream": module(
        "lb-local", "leanvibe.deploy.nginx_upstream", lambda env, _ctx: {
            "app": "demo", "weights": {"purple": 100}, "conf_dir": env.path("nginx", "conf")},
        ["weight color 'purple' is unknown"]),

    # -- canary steps and versions: one case per entry point, to prove that such a refusal changes nothing. The other
    # bad values are unit tests of the check that decides: canary.yml's steps against parse_steps
    # (tests/unit/plugins/module_utils/test_plan.py), the version check of canary.yml and blue_green.yml
    # (tests/unit/plugins/test/test_release_version.py), rollback's target_version (module_utils/test_rollback.py) and
    # the runner's --version and --steps (tests/unit/python_runner/test_runner_cli.py).
    "steps not increasing, as survey text": playbook(
        "canary.yml", steps("50,25"), ['canary_steps must be strictly increasing (got steps "50,25").']),
    "cli: steps not increasing": cli(["canary", "--version", "4.0.0", "--steps", "25,25"], ['steps must be strictly increasing (got steps "25,25").']),
    "canary version ../x": playbook("canary.yml", {"app_version": "../x"}, VERSION_WORDS + ['(got "../x")']),
    "blue-green version ../x": playbook("blue_green.yml", {"app_version": "../x"}, VERSION_WORDS + ['(got "../x")']),
    "rollback target ../x": playbook("rollback.yml", {"target_version": "../x"}, TARGET_WORDS + ['(got "../x")']),
    # Empty means "the previous stable release"; with one release in the ledger there is none.
    "rollback target empty": playbook(
        "rollback.yml", {"target_version": ""}, ["has no earlier release of demo in local to roll back to; give target_version."]),
    "cli: canary version ../x": cli(["canary", "--version", "../x"], ["version must be"] + CLI_VERSION_WORDS + ['(got "../x")']),

    # -- hosts the inventory or --limit leaves out
    "canary --limit without the LB": playbook(
        "canary.yml", ["-e", "app_version=4.1.0", "--limit", "app-local"],
        ["--limit app-local leaves out lb-local; this playbook needs every host of groups lb and app."]),
    "canary --limit without the app host": playbook(
        "canary.yml", ["-e", "app_version=4.1.0", "--limit", "lb-local"],
        ["--limit lb-local leaves out app-local; this playbook needs every host of groups lb and app."]),
    "emergency rollback --limit without the LB": playbook(
        "rollback.yml", ["-e", "emergency=true", "--limit", "app-local"], ["--limit app-local leaves out lb-local;"]),
    "status --limit without the LB": playbook(
        "status.yml", ["--limit", "app-local"],
        ["--limit app-local leaves out lb-local; this playbook needs the first host of group lb."]),
    "canary --limit to an unknown host": playbook(
        "canary.yml", ["-e", "app_version=4.1.0", "--limit", "lb-locla"],
        ["Specified inventory, host pattern and/or --limit leaves us with no hosts to target."]),
    "blue-green on an inventory without group lb": playbook(
        "blue_green.yml", {"app_version": "4.1.0"},
        ["has no host in group lb; this playbook needs hosts in groups lb and app."], setup=inventory_without_lb),
    "cli: canary on an inventory without group lb": cli(
        lambda _env, ctx: ["canary", "--version", "4.1.0", "-i", ctx["inventory"]],
        ["inventory", "has no host in group lb; this playbook needs hosts in groups lb and app."], setup=inventory_without_lb),
    "cli: emergency rollback on an inventory without group lb": cli(
        lambda _env, ctx: ["rollback", "--emergency", "-i", ctx["inventory"]],
        ["has no host in group lb; this playbook needs hosts in groups lb and app."], setup=inventory_without_lb),
    "cli: status on an inventory without group lb": cli(
        lambda _env, ctx: ["status", "-i", ctx["inventory"]],
        ["has no host in group lb; this playbook needs hosts in group lb."], setup=inventory_without_lb),

    # -- a missing artifact (no build command, as outside the local inventory)
    "canary of a release without artifact": playbook(
        "canary.yml", dict(NO_BUILD, app_version="9.9.1"),
        ["Release artifact", "leanvibe-demo-9.9.1.tar.gz does not exist on the controller; build version 9.9.1 first."]),
    "blue-green of a release without artifact": playbook(
        "blue_green.yml", dict(NO_BUILD, app_version="9.9.2"),
        ["Release artifact", "leanvibe-demo-9.9.2.tar.gz does not exist on the controller; build version 9.9.2 first."]),
    "rollback to a release without artifact": playbook(
        "rollback.yml", lambda _env, ctx: ["-e", json.dumps(dict(NO_BUILD, target_version=ctx["version"]))],
        ["leanvibe-demo-0.9.0.tar.gz does not exist on the controller", "did not redeploy, traffic stays on 1.0.0"],
        setup=recorded_release),
    "emergency rollback to a release without artifact": playbook(
        "rollback.yml", lambda _env, ctx: ["-e", json.dumps(dict(NO_BUILD, target_version=ctx["version"], emergency=True))],
        ["leanvibe-demo-0.9.0.tar.gz does not exist on the controller", "did not redeploy, traffic stays on 1.0.0"],
        setup=recorded_release),
    "cli: blue-green of a release without artifact": cli(
        ["blue-green", "--version", "9.9.3", "-e", json.dumps(NO_BUILD)],
        ["leanvibe-demo-9.9.3.tar.gz does not exist on the controller; build version 9.9.3 first."]),

    # -- a stranger on the idle color's port
    "canary with the idle port taken": playbook(
        "canary.yml", {"app_version": "5.0.0"}, ["port %d on 127.0.0.1 is already in use by another process." % SLOT_PORTS["green"]],
        setup=busy_idle_port),
    "blue-green with the idle port taken": playbook(
        "blue_green.yml", {"app_version": "5.0.0"}, ["port %d on 127.0.0.1 is already in use by another process." % SLOT_PORTS["green"]],
        setup=busy_idle_port),
    "cli: canary with the idle port taken": cli(
        ["canary", "--version", "5.0.0"], ["port %d on 127.0.0.1 is already in use by another process." % SLOT_PORTS["green"]],
        setup=busy_idle_port),

    # -- a corrupt ledger (the original bytes are put back after each case)
    "canary on a ledger that is not JSON": playbook(
        "canary.yml", {"app_version": "4.2.0"}, ledger_corrupt("not JSON: "),
        setup=lambda env, tmp: corrupt_ledger(env, tmp, b'{"schema": 1, "app": "demo", "active_col')),
    "blue-green on a ledger that is not UTF-8": playbook(
        "blue_green.yml", {"app_version": "4.2.0"}, ledger_corrupt("not UTF-8)"),
        setup=lambda env, tmp: corrupt_ledger(env, tmp, b"\xff\xfe\x00{}")),
    "rollback on a ledger that is a JSON list": playbook(
        "rollback.yml", {}, ledger_corrupt("not a JSON object)"), setup=lambda env, tmp: corrupt_ledger(env, tmp, b"[]")),
    "emergency rollback on an empty ledger file": playbook(
        "rollback.yml", {"emergency": True}, ledger_corrupt("not JSON: "), setup=lambda env, tmp: corrupt_ledger(env, tmp, b"")),
    "canary on a ledger of another schema": playbook(
        "canary.yml", {"app_version": "4.2.0"}, ledger_corrupt("schema is 2, not 1)"),
        setup=lambda env, tmp: corrupt_ledger(env, tmp, b'{"schema": 2, "app": "demo"}\n')),
    "status on a ledger with a bad color": playbook(
        "status.yml", {}, ledger_corrupt("active_color 'purple' is not blue, green or null)"),
        setup=lambda env, tmp: corrupt_ledger(env, tmp, json.dumps({
            "schema": 1, "app": "demo", "environment": "local", "active_color": "purple", "versions": {}, "weights": {},
            "in_progress": None, "lock": None, "history": []}).encode())),
    "cli: canary on a ledger that is not JSON": cli(
        ["canary", "--version", "4.2.0"], ledger_corrupt("not JSON: "),
        setup=lambda env, tmp: corrupt_ledger(env, tmp, b'{"schema": 1, "app": "demo", "active_col')),
    "cli: rollback on a ledger that is not JSON": cli(
        ["rollback"], ledger_corrupt("not JSON: "), setup=lambda env, tmp: corrupt_ledger(env, tmp, b"{{")),

    # -- a probe target that answers garbage (probes.yml through -e lb_url, and the module itself)
    "probes.yml against a target that answers HTML": playbook(
        "probes.yml", lambda _env, ctx: ["-e", json.dumps({"lb_url": ctx["url"]})],
        ["Synthetic probes failed against http://127.0.0.1:%d: Suite failed" % GARBAGE_PORT, "basic_health: body is not JSON (/health)"],
        setup=lambda env, tmp: garbage_target(env, tmp, "html")),
    "probes.yml against a target that answers the wrong JSON": playbook(
        "probes.yml", lambda _env, ctx: ["-e", json.dumps({"lb_url": ctx["url"], "probe_mode": "quick"})],
        ["Suite failed: 0 of 2 probes passed", "basic_health: /health reports status 'ok', not 'healthy'",
         "api_functionality: POST /api/v1/tasks answered 201 without a task id"],
        setup=lambda env, tmp: garbage_target(env, tmp, "json")),
    "probes.yml against a target that does not speak HTTP": playbook(
        "probes.yml", lambda _env, ctx: ["-e", json.dumps({"lb_url": ctx["url"], "probe_mode": "quick"})],
        ["Suite failed: 0 of 2 probes passed", "basic_health: answer is not HTTP (GET /health)"],
        setup=lambda env, tmp: garbage_target(env, tmp, "raw")),
    "synthetic_probe against a target that answers HTML": module(
        "localhost", "leanvibe.deploy.synthetic_probe",
        lambda _env, ctx: {"url": ctx["url"], "probes": ["basic_health", "database_health"], "timeout": 5},
        ["Suite failed: 0 of 2 probes passed", "basic_health: body is not JSON (/health)",
         "database_health: body is not JSON (/health/database)"],
        setup=lambda env, tmp: garbage_target(env, tmp, "html")),
    "synthetic_probe against a target that does not speak HTTP": module(
        "localhost", "leanvibe.deploy.synthetic_probe",
        lambda _env, ctx: {"url": ctx["url"], "mode": "comprehensive", "api_key": "probe-key", "timeout": 5},
        ["Suite failed: 0 of 6 probes passed", "basic_health: answer is not HTTP (GET /health)",
         "performance: 5 of 5 requests to /health failed (answer is not HTTP)"],
        setup=lambda env, tmp: garbage_target(env, tmp, "raw")),
    # Failed probes are not a usage error: exit 1, status failed.
    "cli: probe a target that answers HTML": cli(
        lambda _env, ctx: ["probe", "--mode", "quick", "-e", json.dumps({"lb_url": ctx["url"]})],
        ["Suite failed: 0 of 2 probes passed", "basic_health: body is not JSON (/health)"], exit_code=1,
        setup=lambda env, tmp: garbage_target(env, tmp, "html")),

    # -- a slot that does not exist
    "slot_release into an unknown color": module(
        "app-local", "leanvibe.deploy.slot_release", lambda env, _ctx: {
            "app": "demo", "slot": "purple", "version": "1.0.0", "base_dir": env.path("app"), "artifact": "/nonexistent.tar.gz",
            "port": SLOT_PORTS["green"] + 1, "command": ["true"]},
        ["value of slot must be one of: blue, green, got: purple"]),
}


# --- running a case ------------------------------------------------------------------------------------------------------

def resolve(value, env, ctx):
    return value(env, ctx) if callable(value) else value


def run_playbook(env, case, ctx):
    args = resolve(case.args, env, ctx)
    if isinstance(args, dict):
        args = ["-e", json.dumps(args)] if args else []
    run = env.playbook(case.target, *args, check=False, inventory=ctx.get("inventory"))
    messages = [str(msg) for msg in run.failure_messages() if msg]
    if not messages:  # ansible-playbook's own refusal, before any task
        messages = [line.split("]: ", 1)[-1] for line in run.stderr.splitlines() if line.startswith("[ERROR]")]
    return run.rc != 0, messages, "rc %d\n%s" % (run.rc, run.stderr[-3000:])


def run_module(env, case, ctx):
    host, name = case.target
    rc, out = env.module(host, name, resolve(case.args, env, ctx))
    match = re.search(r"(?m)^%s \| [A-Z]+!? => (\{.*\})\s*$" % re.escape(host), out)
    result = json.loads(match.group(1)) if match else {}
    if name.endswith("synthetic_probe"):
        # A fault of the target is a failed probe, not a failed task (the module fails only on bad arguments).
        assert rc == 0, out
        return result.get("passed") is False, [result.get("msg", out)], out
    return rc != 0, [result.get("msg", out)], out


def run_cli(env, case, ctx, tmp_path):
    args = list(resolve(case.args, env, ctx))
    if "-i" not in args:
        args += ["-i", "local"]
    never = tmp_path / "runner"
    argv = [CLI] + args + ["-e", "@" + env.vars_file, "--json", "--artifact-dir", str(never)]
    proc = subprocess.run(argv, cwd="/", env=dict(os.environ, ANSIBLE_NOCOLOR="1"), capture_output=True, text=True,
                          timeout=300, check=False)
    detail = "exit %d\n%s\n%s" % (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert proc.returncode == case.exit_code, detail
    result = json.loads(proc.stdout)
    assert result["exit_code"] == case.exit_code, detail
    if case.exit_code == 2:
        assert result["status"] == "invalid", detail
        if not never.exists():
            # Refused before ansible-runner started: one line on stderr.
            lines = proc.stderr.splitlines()
            assert len(lines) == 1 and lines[0].startswith("leanvibe-deploy: error: "), detail
    assert len(result["reasons"]) == 1, detail
    return proc.returncode != 0, result["reasons"], detail


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gets_one_sentence_and_changes_nothing(local_env, tmp_path, name):
    case = CASES[name]
    with contextlib.ExitStack() as stack:
        ctx = stack.enter_context(case.setup(local_env, tmp_path)) if case.setup else {}
        before = local_env.observe()
        if case.kind == "playbook":
            refused, messages, detail = run_playbook(local_env, case, ctx)
        elif case.kind == "module":
            refused, messages, detail = run_module(local_env, case, ctx)
        else:
            refused, messages, detail = run_cli(local_env, case, ctx, tmp_path)
        after = local_env.observe()

    # rc != 0 (the CLI: the case's exit code; synthetic_probe: passed false, as it fails only on bad arguments)
    assert refused, detail
    # One sentence: every message the run printed is it (a rescue may repeat it or wrap it), the last one
    # names every word of the case, on one line, and none is a stack trace or a template error.
    assert messages, detail
    for message in messages:
        assert case.words[0] in message, (messages, detail)
        assert not any(noise in message for noise in NOISE), messages
    final = messages[-1]
    for word in case.words:
        assert word in final, (word, final)
    assert "\n" not in final.strip(), final
    local_env.assert_unchanged(before, after)
