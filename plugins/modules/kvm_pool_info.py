#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: kvm_pool_info
short_description: Facts about libvirt storage pools
version_added: 0.1.0
description:
  - Returns every storage pool of the hypervisor, or the ones named, with type,
    path, state, autostart, space and number of volumes. Changes nothing.
author:
  - iaas.kvm contributors (!UNKNOWN)
options:
  name:
    description:
      - Names of the pools to return; all pools when omitted.
      - A name that does not exist is left out of RV(pools) (no error).
    type: list
    elements: str
extends_documentation_fragment:
  - iaas.kvm.libvirt
  - iaas.kvm.libvirt.info_attributes
seealso:
  - module: iaas.kvm.kvm_pool
  - module: iaas.kvm.kvm_volume_info
"""

EXAMPLES = r"""
- name: All storage pools
  iaas.kvm.kvm_pool_info:
  register: pools

- name: Free space in the default pool
  iaas.kvm.kvm_pool_info:
    name: [default]
  register: default_pool

- name: Show it
  ansible.builtin.debug:
    msg: "{{ (default_pool.pools[0].available / 1024**3) | round(1) }} GiB free"
"""

RETURN = r"""
pools:
  description: The pools, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Name of the pool.
      type: str
      sample: default
    uuid:
      description: UUID of the pool.
      type: str
      sample: 4f373f00-4cf0-44ca-b3fc-5a6b8979d97e
    type:
      description: Pool type (C(dir), C(logical), C(netfs), ...).
      type: str
      sample: dir
    path:
      description: The pool's target path.
      type: str
      sample: /var/lib/libvirt/images
    active:
      description: Whether the pool is started.
      type: bool
      sample: true
    persistent:
      description: Whether the pool has a persistent definition.
      type: bool
      sample: true
    autostart:
      description: Whether libvirtd starts the pool when it starts.
      type: bool
      sample: true
    capacity:
      description: Size of the storage that holds the pool, in bytes (null while inactive).
      type: int
      sample: 270553174016
    allocation:
      description: Bytes in use on that storage (null while inactive).
      type: int
      sample: 24361435136
    available:
      description: Bytes free on that storage (null while inactive).
      type: int
      sample: 246191738880
    volume_count:
      description: Number of volumes in the pool (null while inactive).
      type: int
      sample: 3
"""

import contextlib

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import (
    URI_ARGUMENT_SPEC,
    call_with_connection,
    check_libraries,
    is_not_found,
    libvirt,
)
from ansible_collections.iaas.kvm.plugins.module_utils._storage import pool_facts


def list_pools(conn, names=None):
    result = []
    for pool in conn.listAllStoragePools(0):
        if names and pool.name() not in names:
            continue
        # Fresh space figures; a pool that cannot be refreshed is shown as it was.
        with contextlib.suppress(libvirt.libvirtError):
            pool.refresh(0)
        try:
            result.append(pool_facts(pool))
        except libvirt.libvirtError as exc:
            if not is_not_found(exc):
                raise  # else removed by another client while it was read
    return sorted(result, key=lambda facts: facts["name"])


def main():
    argument_spec = dict(name=dict(type="list", elements="str"))
    argument_spec.update(URI_ARGUMENT_SPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    check_libraries(module)
    pools, error = call_with_connection(module.params["uri"], lambda conn: list_pools(conn, module.params["name"]))
    if error:
        module.fail_json(msg=error)
    module.exit_json(changed=False, pools=pools)


if __name__ == "__main__":
    main()
