# -*- coding: utf-8 -*-
"""What the tests of the modules that change host devices (kvm_gpu_passthrough, kvm_sriov,
kvm_vgpu) check of a refusal: it fails, in check mode and in a real run alike, with changed
false, the actions it would have done and no write, and the fake host (sysfs and /etc) is
exactly as it was."""

from __future__ import annotations

import re


def refused(run, run_module, host, pattern, actions, **args):
    """Run ``run(run_module, host, ...)`` in check mode and for real; both must be this refusal."""
    before = host.snapshot()
    result = None
    for check_mode in (True, False):
        result = run(run_module, host, check_mode=check_mode, fails=True, **args)
        assert result.failed, "the request was expected to be refused"
        assert re.search(pattern, result["msg"]), result["msg"]
        assert result.changed is False and result["actions"] == actions and result["writes"] == []
        assert host.snapshot() == before, "a refused request changed the host"
    assert host.violations == []
    return result
