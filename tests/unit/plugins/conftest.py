# -*- coding: utf-8 -*-
"""Fixtures for the unit tests of the plugins."""

from __future__ import annotations

import pytest

from tests.fakesys import SCENARIOS, FakeHost


@pytest.fixture
def fake_host(tmp_path):
    """``fake_host(scenario, build)`` builds a fake host (sysfs, /proc, /etc) for one of the GPU
    scenarios of tests/fakesys.py (or none), lets ``build(host)`` add to it, and runs its fake
    kernel until the test ends."""
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
