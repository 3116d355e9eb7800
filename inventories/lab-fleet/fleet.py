#!/usr/bin/env python3
# -*- coding: utf-8 -*-
"""Inventory of the lab's running fleet (``scripts/lab.sh fleet start N``).

Prints the group ``hypervisors`` with hv1..hvN, N the fleet's size recorded by
the lab helper in its state directory (``IAAS_KVM_FLEET_DIR``, default
/var/lib/iaas-kvm-fleet), and that directory as ``iaas_fleet_dir``, where the
SSH configuration, key and known_hosts of the fleet live (group_vars/ uses
them). Ansible runs it as a script inventory (``--list``, ``--host NAME``).
"""

from __future__ import annotations

import json
import os
import sys

FLEET_DIR = os.environ.get("IAAS_KVM_FLEET_DIR") or "/var/lib/iaas-kvm-fleet"
MANAGEMENT_NET = "192.168.149"


def fleet_size():
    try:
        with open(os.path.join(FLEET_DIR, "size"), encoding="ascii") as handle:
            return int(handle.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def inventory():
    size = fleet_size()
    if size < 1:
        sys.exit("no lab fleet in %s: start one with scripts/lab.sh fleet start N" % FLEET_DIR)
    hosts = ["hv%d" % k for k in range(1, size + 1)]
    return {
        "all": {"vars": {"iaas_fleet_dir": FLEET_DIR}},
        "hypervisors": {"hosts": hosts},
        "_meta": {
            "hostvars": {
                name: {"ansible_host": "%s.%d" % (MANAGEMENT_NET, 10 + k)} for k, name in enumerate(hosts, start=1)
            }
        },
    }


def main(argv):
    if len(argv) > 1 and argv[1] == "--host":
        print(json.dumps({}))
        return 0
    print(json.dumps(inventory(), indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
