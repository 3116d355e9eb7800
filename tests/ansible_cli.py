# -*- coding: utf-8 -*-
"""Ansible's own commands (ansible-playbook, ansible-inventory) run from the
repository root as a user runs them, with its ansible.cfg, for tests of plugins and
playbooks. They run in a process of their own: Ansible's controller code must not
be imported into a test process that runs modules in-process."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def ansible(command, *args, timeout=300):
    """``command`` (``ansible-inventory``, ``ansible-playbook``) with ``args``; the completed process.
    An inventory source that cannot be parsed is an error, not a warning."""
    env = dict(os.environ, ANSIBLE_INVENTORY_UNPARSED_FAILED="true", ANSIBLE_NOCOLOR="1", PYTHONPATH="")
    return subprocess.run(
        [command, *[str(a) for a in args]],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def unwrap(value):
    """ansible-inventory --list marks strings that did not come from a trusted source
    (such as the hypervisors' answers) as unsafe; their plain values."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value
