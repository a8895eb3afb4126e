"""The rollback action: the module gets every option but the webhooks; the event goes to the detached sender."""

from unittest import mock

import pytest

from ansible_collections.leanvibe.deploy.plugins.action import rollback as action


def make(args, module_result):
    task = mock.MagicMock()
    task.args = args
    task.async_val = 0
    plugin = action.ActionModule(task, mock.MagicMock(), mock.MagicMock(), loader=None, templar=None, shared_loader_obj=None)
    plugin._execute_module = mock.MagicMock(return_value=dict(module_result))
    plugin._remove_tmp_path = mock.MagicMock()
    return plugin


@pytest.fixture
def sent(monkeypatch):
    calls = []
    monkeypatch.setattr(action, "send_detached", lambda hooks, event: calls.append((hooks, event)) or len(hooks or []))
    return calls


def test_webhooks_stay_on_the_controller_and_get_the_event(sent):
    hooks = [{"url": "http://m/api/events", "headers": {"Authorization": "Bearer t"}}]
    plugin = make({"app": "demo", "webhooks": hooks}, {"changed": True, "event": {"event": "rollback"}})
    with mock.patch.object(action.ActionBase, "run", return_value={}):
        result = plugin.run(task_vars={})
    assert plugin._execute_module.call_args.kwargs["module_args"] == {"app": "demo"}
    assert sent == [(hooks, {"event": "rollback"})]
    assert result["notified"] == 1 and result["changed"] is True


@pytest.mark.parametrize("module_result", [{"failed": True, "msg": "no"}, {"changed": False, "event": None}])
def test_no_event_or_a_failure_sends_nothing(sent, module_result):
    plugin = make({"app": "demo", "webhooks": ["http://m"]}, module_result)
    with mock.patch.object(action.ActionBase, "run", return_value={}):
        result = plugin.run(task_vars={})
    assert [event for _hooks, event in sent if event] == []
    assert result.get("failed") == module_result.get("failed")
