# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Named steps at which a module can be made to kill itself, so that tests prove
an interrupted run leaves a state the next run converges.

Inert unless the environment variable ``IAAS_KVM_TEST_KILL_AT`` names the step
(only the interruption tests, tests/integration/test_interrupted.py, set it).
The process then ends with SIGKILL, as if the machine or Ansible had killed it:
no clean-up, no ``finally``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import signal

KILL_AT = "IAAS_KVM_TEST_KILL_AT"


def kill_point(step):
    """Die here when ``IAAS_KVM_TEST_KILL_AT`` is ``step`` (e.g. ``kvm_vm:defined``)."""
    if os.environ.get(KILL_AT) == step:
        os.kill(os.getpid(), signal.SIGKILL)
