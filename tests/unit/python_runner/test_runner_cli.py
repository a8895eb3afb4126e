"""leanvibe_runner.cli (leanvibe-deploy) with api.run faked, and leanvibe_runner.progress."""

import io
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

import ansible_runner
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # runner_test_helpers, whatever pytest's import mode
from runner_test_helpers import (FakeRunner, interpret, load_events, make_project, refuse_real_runs,  # noqa: E402
                                 validate)

from leanvibe_runner import api, cli  # noqa: E402
from leanvibe_runner.codes import ExitCode  # noqa: E402
from leanvibe_runner.events import RunEvent  # noqa: E402
from leanvibe_runner.progress import SHOWN, PlainProgress, RichProgress, progress_for  # noqa: E402
from leanvibe_runner.result import RunResult, StepResult  # noqa: E402

ERROR_PREFIX = "leanvibe-deploy: error:"


class FakeApiRun:
    """Stands in for api.run: records its call, sends ``events`` to on_event, returns ``result``."""

    def __init__(self, result, events=(), during=None):
        self.result = result
        self.events = list(events)
        self.during = during
        self.calls = []

    def __call__(self, command, inventory, **options):
        self.calls.append((command, inventory, options))
        for event in self.events:
            if options.get("on_event") is not None:
                options["on_event"](event)
        if self.during is not None:
            self.during(options)
        return self.result


@pytest.fixture(autouse=True)
def no_real_runs(monkeypatch, tmp_path):
    monkeypatch.setattr(ansible_runner, "run", refuse_real_runs)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv("LEANVIBE_PROJECT_DIR", raising=False)


@pytest.fixture
def fake_run(monkeypatch):
    def install(result, events=(), during=None):
        fake = FakeApiRun(result, events, during)
        monkeypatch.setattr(api, "run", fake)
        return fake
    return install


def result_of(status, exit_code, command="canary", **fields):
    fields.setdefault("artifact_dir", "/tmp/artifacts/x")
    if exit_code and status != "invalid":
        fields.setdefault("reasons", ["why"])
    return RunResult(command=command, status=status, exit_code=ExitCode(exit_code), **fields)


def recorded_rollback_result():
    interpreter, _events = interpret("canary", load_events("canary_rolled_back.json"))
    result = interpreter.result(2, "failed")
    result.artifact_dir, result.duration_s = "/tmp/leanvibe-deploy-canary-x/artifacts/1", 12.34
    return result


# -- exit codes and options ------------------------------------------------------------------------------------
@pytest.mark.parametrize("status, exit_code", [("promoted", 0), ("rolled_back", 1), ("invalid", 2),
                                               ("rollback_failed", 3), ("locked", 4)])
def test_exit_codes_pass_through(fake_run, capsys, status, exit_code):
    fake_run(result_of(status, exit_code))
    assert cli.main(["canary", "-i", "local", "--version", "2.2.0", "-q"]) == exit_code
    out, err = capsys.readouterr()
    assert out.startswith("canary: %s (exit %d)" % (status, exit_code))
    assert ERROR_PREFIX not in err  # an ansible-playbook rc 4/5 (artifact dir set) is no CLI usage error


def test_options_reach_the_api(fake_run, tmp_path):
    fake = fake_run(result_of("promoted", 0))
    cli.main(["canary", "-i", "staging", "--version", "2.2.0", "--steps", "10,100", "--check", "-e", "a=1", "-e",
              "@vars.yml", "--artifact-dir", str(tmp_path / "art"), "--project-dir", str(tmp_path), "-q"])
    command, inventory, options = fake.calls[0]
    assert (command, inventory) == ("canary", "staging")
    assert options["version"] == "2.2.0" and options["steps"] == "10,100" and options["check"] is True
    assert options["extravars"] == ["a=1", "@vars.yml"]
    assert options["artifact_dir"] == str(tmp_path / "art") and options["project_dir"] == str(tmp_path)
    assert options["on_event"] is None  # -q
    assert callable(options["cancel"]) and options["cancel"]() is False


@pytest.mark.parametrize("argv, expected", [
    (["rollback", "-i", "local", "--version", "2.0.0", "--emergency", "--reason", "5xx"],
     {"target_version": "2.0.0", "emergency": True, "reason": "5xx"}),
    (["rollback", "-i", "local"], {}),
    (["probe", "-i", "local", "--mode", "quick"], {"mode": "quick"}),
    (["probe", "-i", "local", "--mode", "critical-path-only"], {"mode": "critical-path-only"}),
    (["probe", "-i", "local"], {"mode": "comprehensive"}),
    (["history", "-i", "local", "--limit", "7"], {"limit": 7}),
    (["history", "-i", "local"], {"limit": 20}),
    (["status", "-i", "local"], {}),
    (["blue-green", "-i", "local", "--version", "3.0"], {"version": "3.0"}),
])
def test_subcommand_options(fake_run, argv, expected):
    fake = fake_run(result_of("ok", 0, command=argv[0]))
    assert cli.main(argv + ["-q"]) == 0
    _command, _inventory, options = fake.calls[0]
    ignored = ("extravars", "artifact_dir", "project_dir", "on_event", "cancel")
    given = {k: v for k, v in options.items() if k not in ignored}
    assert given == expected


def test_progress_goes_to_stdout_without_json(fake_run, capsys):
    events = [RunEvent("plan", "canary 2.2.0 -> 2.3.0", at=0), RunEvent("task", "Gate the step", at=0)]
    fake = fake_run(result_of("promoted", 0), events=events)
    cli.main(["canary", "-i", "local", "--version", "2.3.0"])
    assert isinstance(fake.calls[0][2]["on_event"], PlainProgress)
    out, err = capsys.readouterr()
    assert out.splitlines()[0].endswith(" plan      canary 2.2.0 -> 2.3.0")
    assert "Gate the step" not in out and err == ""


# -- --json ------------------------------------------------------------------------------------------------
def test_json_prints_one_result_that_validates(fake_run, capsys):
    events = [RunEvent("plan", "canary 2.2.0 -> 2.3.0"), RunEvent("gate", "gate at 25 %: FAIL")]
    fake_run(recorded_rollback_result(), events=events)
    assert cli.main(["canary", "-i", "local", "--version", "2.3.0", "--json"]) == 1
    out, err = capsys.readouterr()
    data = json.loads(out)  # the whole of stdout is one JSON document
    assert isinstance(data, dict)
    validate(data)
    assert (data["status"], data["exit_code"], data["rolled_back"]) == ("rolled_back", 1, True)
    assert data["steps"][0]["weight"] == 25
    assert "gate at 25 %: FAIL" in err  # progress goes to stderr


def test_json_with_quiet(fake_run, capsys):
    fake_run(result_of("passed", 0, command="probe"), events=[RunEvent("probes", "probes passed")])
    assert cli.main(["probe", "-i", "local", "--json", "-q"]) == 0
    out, err = capsys.readouterr()
    assert validate(json.loads(out))["status"] == "passed"
    assert err == ""


# -- usage errors ------------------------------------------------------------------------------------------
USAGE_ERRORS = {
    "unknown-subcommand": (["deploy", "-i", "local"], "invalid choice: 'deploy'"),
    "no-subcommand": ([], "the following arguments are required: COMMAND"),
    "unknown-option": (["canary", "-i", "local", "--version", "1", "--bogus"], "unrecognized arguments: --bogus"),
    "missing-inventory": (["canary", "--version", "1"], "the following arguments are required: -i/--inventory"),
    "missing-version": (["canary", "-i", "local"], "the following arguments are required: --version"),
    "limit-not-a-number": (["history", "-i", "local", "--limit", "ten"], "argument --limit: invalid int value"),
    "bad-mode": (["probe", "-i", "local", "--mode", "deep"], "argument --mode: invalid choice: 'deep'"),
    "status-takes-no-version": (["status", "-i", "local", "--version", "1"], "unrecognized arguments: --version 1"),
}


@pytest.mark.parametrize("name", sorted(USAGE_ERRORS))
def test_usage_errors_print_one_line(monkeypatch, capsys, name):
    argv, message = USAGE_ERRORS[name]
    monkeypatch.setattr(api, "run", refuse_real_runs)
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n")
    assert lines[0].startswith(ERROR_PREFIX + " ")
    assert message in lines[0]


@pytest.mark.parametrize("name", sorted(USAGE_ERRORS))
def test_usage_errors_with_json_print_an_invalid_result(monkeypatch, capsys, name):
    argv, message = USAGE_ERRORS[name]
    monkeypatch.setattr(api, "run", refuse_real_runs)
    assert cli.main(argv + ["--json"]) == 2
    out, err = capsys.readouterr()
    assert len(err.splitlines()) == 1 and err.startswith(ERROR_PREFIX)
    data = validate(json.loads(out))
    assert (data["status"], data["exit_code"]) == ("invalid", 2)
    assert message in data["reasons"][0]
    if argv:
        assert data["command"] == argv[0]


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path / "project")


@pytest.mark.parametrize("argv, message", [
    (["history", "-i", "local", "--limit", "5000"], "the history limit must be a whole number from 1 to 1000"),
    (["history", "-i", "local", "--limit", "-1"], "the history limit must be a whole number from 1 to 1000"),
    (["canary", "-i", "local", "--version", "../x"], 'version must be letters, digits'),
    (["canary", "-i", "local", "--version", "2.0", "--steps", "50,10"], "steps must be strictly increasing"),
    (["canary", "-i", "nowhere", "--version", "2.0"], "inventory nowhere not found"),
    (["status", "-i", "local", "-e", "app_version=1"], "app_version"),
])
def test_api_usage_errors_print_one_line(project, capsys, argv, message):
    # The real api.run; ansible_runner.run refuses to be called.
    assert cli.main(argv + ["--project-dir", str(project)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith(ERROR_PREFIX) and message in err


def test_api_usage_error_with_json(project, capsys):
    assert cli.main(["history", "-i", "local", "--limit", "5000", "--json", "--project-dir", str(project)]) == 2
    out, err = capsys.readouterr()
    data = validate(json.loads(out))
    assert (data["command"], data["status"], data["exit_code"]) == ("history", "invalid", 2)
    assert err.startswith(ERROR_PREFIX) and len(err.splitlines()) == 1


# The runner's own checks of --version and --steps (inputs.check_version, inputs.parse_steps) through the real api.run:
# exit 2, one line on stderr, an `invalid` result with the one reason, and ansible-runner never started. The cases of
# tests/integration/test_bad_input_matrix.py that only checked these live here; the matrix keeps one of each (a version
# ../x, steps 25,25) to prove that the refusal changes nothing.
VERSION_WORDS = ["must be letters, digits, '.', '_', '+' or '-' (1 to 64, starting with a letter or digit, no '..'),",
                 "without path separators or spaces"]
BAD_VERSIONS_AND_STEPS = {
    "canary version ../x": (["canary", "--version", "../x"], ["version must be"] + VERSION_WORDS + ['(got "../x")']),
    "canary version empty": (["canary", "--version", ""], ["version must be"] + VERSION_WORDS + ['(got "")']),
    "canary version with spaces": (["canary", "--version", "1.0 beta"], ["version must be"] + VERSION_WORDS + ['(got "1.0 beta")']),
    "blue-green version ../x": (["blue-green", "--version", "../x"], ["version must be"] + VERSION_WORDS + ['(got "../x")']),
    "blue-green version empty": (["blue-green", "--version", ""], ["version must be"] + VERSION_WORDS + ['(got "")']),
    "rollback target ../x": (["rollback", "--version", "../x"], ["target version must be"] + VERSION_WORDS + ['(got "../x")']),
    "rollback target empty": (["rollback", "--version", ""], ["target version must be"] + VERSION_WORDS + ['(got "")']),
    "rollback target with spaces": (["rollback", "--version", "1.0 beta"], ["target version must be"] + VERSION_WORDS + ['(got "1.0 beta")']),
    "steps not increasing": (["canary", "--version", "4.0.0", "--steps", "25,25"], ['steps must be strictly increasing (got steps "25,25").']),
    "steps that are not numbers": (["canary", "--version", "4.0.0", "--steps", "10,x"],
                                   ['steps must be whole percentages separated by commas, such as 10,25,50,100 (got steps "10,x").']),
    "steps over 100": (["canary", "--version", "4.0.0", "--steps", "50,101"], ['each of steps must be from 1 to 100 (got steps "50,101").']),
}


@pytest.mark.parametrize("name", list(BAD_VERSIONS_AND_STEPS))
def test_bad_versions_and_steps_are_refused_before_anything_starts(project, capsys, name):
    argv, words = BAD_VERSIONS_AND_STEPS[name]
    artifacts = project / "artifacts"
    code = cli.main(argv + ["-i", "local", "--json", "--artifact-dir", str(artifacts), "--project-dir", str(project)])
    out, err = capsys.readouterr()
    assert code == 2
    data = validate(json.loads(out))
    assert (data["command"], data["status"], data["exit_code"]) == (argv[0], "invalid", 2)
    assert len(data["reasons"]) == 1
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0] == "%s %s" % (ERROR_PREFIX, data["reasons"][0])
    for word in words:
        assert word in data["reasons"][0], (word, data["reasons"][0])
    assert not artifacts.exists()


def test_history_limit_zero_is_a_usage_error(project, capsys, monkeypatch):
    runner = FakeRunner()
    monkeypatch.setattr(ansible_runner, "run", runner)
    code = cli.main(["history", "-i", "local", "--limit", "0", "-q", "--project-dir", str(project)])
    assert [call["extravars"] for call in runner.calls] == []  # actually runs with {'history_limit': 20}
    assert code == 2
    assert "history limit" in capsys.readouterr().err


# -- the summary -------------------------------------------------------------------------------------------
def test_summary_of_a_rolled_back_canary_names_the_reason(fake_run, capsys):
    fake_run(recorded_rollback_result())
    assert cli.main(["canary", "-i", "local", "--version", "2.3.0", "-q"]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "canary 2.3.0: rolled_back (exit 1) in 12.3 s"
    assert "  from 2.2.0" in lines
    assert "  rolled back to 2.2.0 in 15 ms" in lines
    assert "  reason: gate failed at 25 %: traffic: canary p95 407 ms > limit 59 ms" \
           " (1.5 \u00d7 stable p95 6 ms + 50 ms)" in lines
    assert any(line.startswith("  step  25 %  fail  probes pass  traffic fail") for line in lines)
    assert "  artifacts: /tmp/leanvibe-deploy-canary-x/artifacts/1" in lines


def test_summary_of_a_promoted_canary(fake_run, capsys):
    steps = [StepResult(weight=w, verdict="pass", probes="pass", analysis="pass") for w in (10, 100)]
    fake_run(result_of("promoted", 0, version="2.2.0", from_version="2.0.0", steps=steps))
    cli.main(["canary", "-i", "local", "--version", "2.2.0", "-q"])
    out = capsys.readouterr().out
    assert "rolled back" not in out and "reason:" not in out
    assert out.count("  step ") == 2


def test_summary_of_a_status(fake_run, capsys):
    details = {"lb_url": "http://lb", "lb_status": 200, "active_color": "blue", "versions": {"blue": "2.2.0"},
               "weights": {"blue": 100}, "lock": {"holder": {"run_id": "r9"}},
               "history": [{"finished": "2026-11-27T06:40:43.412Z", "type": "deploy", "from_version": "2.0.0",
                            "version": "2.1.0", "outcome": "failed", "reasons": ["probes failed"]}]}
    fake_run(result_of("serving", 0, command="status", version="2.2.0", details=details))
    cli.main(["status", "-i", "local", "-q"])
    out = capsys.readouterr().out
    assert '  LB http://lb answers 200; active color blue; versions {"blue": "2.2.0"}; weights {"blue": 100}' in out
    assert '  deploy lock held by {"run_id": "r9"}' in out
    assert "2026-11-27T06:40:43" in out and "probes failed" in out


def test_summary_of_a_lock_held(fake_run, capsys):
    fake_run(result_of("locked", 4, lock_held_by={"run_id": "r1"}))
    assert cli.main(["canary", "-i", "local", "--version", "2.2.0", "-q"]) == 4
    assert '  the deploy lock is held by {"run_id": "r1"}' in capsys.readouterr().out


def test_summary_of_probes(fake_run, capsys):
    details = {"probes": [{"name": "basic_health", "passed": False, "duration_ms": 4.8, "detail": "503"}]}
    fake_run(result_of("failed", 1, command="probe", details=details))
    cli.main(["probe", "-i", "local", "-q"])
    assert "basic_health         FAIL     4.8 ms  503" in capsys.readouterr().out


# -- signals -----------------------------------------------------------------------------------------------
def test_first_interrupt_cancels_and_handlers_are_restored(fake_run):
    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    seen = {}

    def during(options):
        seen["before"] = options["cancel"]()
        signal.raise_signal(signal.SIGINT)
        seen["after"] = options["cancel"]()
        with pytest.raises(KeyboardInterrupt):  # the second one stops the CLI the hard way
            signal.raise_signal(signal.SIGTERM)

    fake_run(result_of("cancelled", 1), during=during)
    assert cli.main(["status", "-i", "local", "-q"]) == 1
    assert seen == {"before": False, "after": True}
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


# -- progress ----------------------------------------------------------------------------------------------
def test_progress_for_a_pipe_is_plain():
    assert isinstance(progress_for(io.StringIO()), PlainProgress)


def test_progress_when_quiet_is_none():
    assert progress_for(io.StringIO(), quiet=True) is None


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_for_a_terminal_is_rich(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    stream = _Tty()
    progress = progress_for(stream)
    try:
        assert isinstance(progress, RichProgress)
        progress(RunEvent("task", "Gate the step"))
        progress(RunEvent("gate", "gate at 10 %: PASS [not markup]", {"verdict": "pass"}))
    finally:
        progress.close()
    assert "gate at 10 %: PASS [not markup]" in stream.getvalue()


def test_plain_progress_writes_one_line_per_shown_event():
    stream = io.StringIO()
    progress = PlainProgress(stream)
    at = time.mktime((2026, 11, 27, 7, 38, 5, 0, 0, -1))
    for kind in SHOWN:
        progress(RunEvent(kind, "message of %s" % kind, at=at))
    progress(RunEvent("task", "Gate the step", at=at))
    progress(RunEvent("finished", "canary: promoted (exit 0)", at=at))
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == len(SHOWN)
    assert lines[0] == "07:38:05 started   message of started"
    assert [line.split()[1] for line in lines] == list(SHOWN)
    assert "Gate the step" not in stream.getvalue() and "finished" not in stream.getvalue()


def test_plain_progress_of_the_recorded_rollback():
    stream = io.StringIO()
    _interpreter, events = interpret("canary", load_events("canary_rolled_back.json"))
    progress = PlainProgress(stream)
    for event in events:
        progress(event)
    lines = stream.getvalue().splitlines()
    assert len(lines) == len([event for event in events if event.kind != "task"]) == 10
    assert [line.split()[1] for line in lines][-4:] == ["gate", "rollback", "phase", "failure"]


def test_a_crash_exits_3_never_1(monkeypatch, capsys):
    def crash(*_args, **_kwargs):
        raise RuntimeError("ansible-runner vanished")

    monkeypatch.setattr(cli.api, "run", crash)
    assert cli.main(["status", "-i", "local", "-q"]) == 3
    err = capsys.readouterr().err.splitlines()
    assert err == ["leanvibe-deploy: internal error (RuntimeError: ansible-runner vanished): the state is unknown"]
