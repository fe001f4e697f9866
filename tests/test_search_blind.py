"""task_is_blind: a task config is blind (no ground truth) when its class says ``blind = True``,
read from the class its ``_target_`` names without building the task."""
import sys

import pytest

from dip_lightning.search.blind import task_is_blind


@pytest.mark.parametrize("task, blind", [("flash", True), ("denoise", False), ("sr", False), ("inpaint", False),
                                         ("deepinv_mri", False)])
def test_the_shipped_tasks(compose_cfg, task, blind):
    assert task_is_blind(compose_cfg(f"task={task}").task) is blind


def test_the_class_attribute_decides_not_the_name(tmp_path, monkeypatch):
    (tmp_path / "my_tasks.py").write_text(
        "from dip_lightning.tasks.base import Task\n"
        "class NightShot(Task):\n"
        "    blind = True\n"
        "    def __init__(self):\n"
        "        raise AssertionError('never built')\n"
        "class NotReallyFlashNoFlash(Task):\n"
        "    blind = False\n"
        "    def __init__(self):\n"
        "        raise AssertionError('never built')\n"
        "def make_task():\n"
        "    raise AssertionError('never called')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_tasks", raising=False)
    assert task_is_blind({"_target_": "my_tasks.NightShot"}) is True
    assert task_is_blind({"_target_": "my_tasks.NotReallyFlashNoFlash"}) is False
    assert task_is_blind({"_target_": "my_tasks.make_task"}) is False  # a factory says nothing: not blind


def test_a_target_that_cannot_be_imported_is_taken_as_not_blind(tmp_path, monkeypatch):
    (tmp_path / "broken_tasks.py").write_text("import no_such_dependency_here\nclass Flash:\n    blind = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert task_is_blind({"_target_": "no_such_package.FlashNoFlash"}) is False
    assert task_is_blind({"_target_": "dip_lightning.tasks.NoSuchFlashNoFlash"}) is False
    assert task_is_blind({"_target_": "broken_tasks.Flash"}) is False
    assert task_is_blind({}) is False and task_is_blind(None) is False and task_is_blind({"_target_": None}) is False
