# -*- coding: utf-8 -*-
"""Fixtures shared by unit and integration tests.

The collection is imported as ``ansible_collections.iaas.kvm`` through the
``collections/`` directory at the repository root (a symlink back to it).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
COLLECTIONS = REPO / "collections"
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))

# Every object a test creates carries this prefix; clean-up touches nothing else.
TEST_PREFIX = "iaastest-"


class ModuleResult(dict):
    """The JSON a module printed, with a few conveniences for assertions."""

    @property
    def failed(self) -> bool:
        return bool(self.get("failed"))

    @property
    def changed(self) -> bool:
        return bool(self.get("changed"))


def _module_object(module):
    if isinstance(module, str):
        import importlib

        return importlib.import_module("ansible_collections.iaas.kvm.plugins.modules." + module)
    return module


def check_outcome(name, result, fails):
    """Fail the test when the module failed and ``fails`` is false, or did not
    fail although ``fails`` is true: a test that expects a failure says so, and
    no other test can pass on an error (a failure also reports ``changed: false``)."""
    if result.get("failed") and not fails:
        raise AssertionError("%s failed unexpectedly: %s" % (name, result.get("msg")))
    if fails and not result.get("failed"):
        raise AssertionError("%s was expected to fail, but it succeeded: %r" % (name, dict(result)))
    return result


def run_module(module, args, check_mode=False, diff=False, fails=False):
    """Run a module's ``main()`` in-process with ``args`` and return what it printed.

    This is the real module code path (AnsibleModule argument parsing, check
    mode, diff mode, exit_json/fail_json); only the transport is skipped. The
    test fails when the module fails, unless ``fails=True`` says that a failure
    is expected (and then it fails when the module succeeds).
    """
    from ansible.module_utils.testing import patch_module_args

    module = _module_object(module)
    margs = dict(args)
    margs["_ansible_check_mode"] = check_mode
    margs["_ansible_diff"] = diff
    out = io.StringIO()
    code = None
    with patch_module_args(margs), contextlib.redirect_stdout(out):
        try:
            module.main()
        except SystemExit as exc:
            code = exc.code
    text = out.getvalue().strip()
    if not text:
        raise AssertionError("module %s printed nothing (exit code %r)" % (module.__name__, code))
    # exit_json prints one JSON document, possibly after warnings on other lines.
    result = ModuleResult(json.loads(text[text.index("{") :]))
    if code not in (0, 1, None):
        raise AssertionError("module exited with %r: %s" % (code, text))
    return check_outcome(module.__name__.rpartition(".")[2], result, fails)


@pytest.fixture(name="run_module")
def fixture_run_module():
    return run_module


@pytest.fixture
def fake_host(tmp_path):
    """``fake_host(scenario, build)`` builds a fake host (sysfs, /proc, /etc) for one of the GPU
    scenarios of tests/fakesys.py (or none), lets ``build(host)`` add to it, and runs its fake
    kernel until the test ends. Unit tests of the GPU modules and the gpu_host role tests use it."""
    from tests.fakesys import SCENARIOS, FakeHost

    hosts = []

    def make(scenario=None, build=None, name="iaastest-host"):
        host = FakeHost(tmp_path / name)
        if scenario is not None:
            SCENARIOS[scenario](host)
        if build is not None:
            build(host)
        host.start()
        hosts.append(host)
        return host

    yield make
    for host in hosts:
        host.stop()
