#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: kvm_volume_info
short_description: Facts about the volumes of a libvirt storage pool
version_added: 0.1.0
description:
  - Returns one volume, or every volume of a pool, with its path, capacity,
    allocation, format, backing chain, import record and the VMs that use it.
  - The import records that M(iaas.kvm.kvm_volume) keeps beside imported volumes
    (C(<name>.iaas-import.json)) are shown as the C(import) of their volume, not
    as volumes of their own.
  - Changes nothing; the pool is refreshed first, so files put into a directory
    pool by other means are listed too.
author:
  - iaas.kvm contributors (!UNKNOWN)
options:
  pool:
    description:
      - The storage pool to read. It must exist and be active.
    type: str
    default: default
  name:
    description:
      - Names of the volumes to return; all volumes of O(pool) when omitted.
      - A name that is not in the pool is left out of RV(volumes) (no error).
    type: list
    elements: str
extends_documentation_fragment:
  - iaas.kvm.libvirt
  - iaas.kvm.libvirt.info_attributes
seealso:
  - module: iaas.kvm.kvm_volume
  - module: iaas.kvm.kvm_pool_info
"""

EXAMPLES = r"""
- name: Every volume of the default pool
  iaas.kvm.kvm_volume_info:
  register: volumes

- name: Volumes that no VM uses
  ansible.builtin.debug:
    msg: "{{ volumes.volumes | selectattr('used_by', 'equalto', []) | map(attribute='name') | list }}"

- name: The base image a VM disk is built on
  iaas.kvm.kvm_volume_info:
    pool: default
    name: web1.qcow2
  register: web1_disk

- name: Show it
  ansible.builtin.debug:
    msg: "{{ web1_disk.volumes[0].backing_chain | map(attribute='path') | list }}"
"""

RETURN = r"""
volumes:
  description: The volumes, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Name of the volume.
      type: str
      sample: web1.qcow2
    pool:
      description: Its pool.
      type: str
      sample: default
    path:
      description: Path of the volume on the hypervisor.
      type: str
      sample: /var/lib/libvirt/images/web1.qcow2
    capacity:
      description: Size the guest sees, in bytes.
      type: int
      sample: 42949672960
    allocation:
      description: Bytes the volume takes on the host's disk.
      type: int
      sample: 1966080
    format:
      description: Format of the volume as libvirt reads it (C(qcow2), C(raw), C(iso), ...).
      type: str
      sample: qcow2
    backing_chain:
      description:
        - The files the volume is built on, nearest first, each with C(path),
          C(format), and the C(volume) and C(pool) it is (null for a file that is
          not a volume of an active pool).
      type: list
      elements: dict
      sample: [{path: /var/lib/libvirt/images/debian-12.qcow2, format: qcow2, volume: debian-12.qcow2, pool: default}]
    import:
      description:
        - The import record of a volume that M(iaas.kvm.kvm_volume) imported from a
          file or URL (null for other volumes), with C(source), C(sha256), C(size)
          (bytes), C(format), C(state) (C(complete), or C(importing) while an import
          runs or after one was interrupted), C(imported_at) (UTC), C(version), and
          C(source_mtime_ns) for a file.
      type: dict
      sample:
        source: https://images.example.com/debian-12.qcow2
        sha256: 2e9c14d856af0b274d2735c6105083fccb96271f8144b0374f7fbc44136baba2
        size: 186449920
        format: qcow2
        state: complete
        imported_at: "2026-01-01T00:00:00Z"
        source_mtime_ns: null
        version: 1
    used_by:
      description: Names of the VMs (defined or running) with a disk on this volume.
      type: list
      elements: str
      sample: [web1]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import (
    URI_ARGUMENT_SPEC,
    call_with_connection,
    check_libraries,
    is_not_found,
    libvirt,
)
from ansible_collections.iaas.kvm.plugins.module_utils._names import validate_name
from ansible_collections.iaas.kvm.plugins.module_utils._storage import (
    disk_users,
    get_pool,
    import_record_name,
    is_bookkeeping_volume,
    read_import_record,
    volume_details,
)


def list_volumes(conn, pool_name, names=None):
    """The volumes of ``pool_name`` (only ``names`` when given), with import records and users."""
    validate_name(pool_name, "pool name")
    for name in names or []:
        validate_name(name)
    pool = get_pool(conn, pool_name)
    volumes = {vol.name(): vol for vol in pool.listAllVolumes(0)}
    users = disk_users(conn)
    result = []
    for name in sorted(volumes):
        if is_bookkeeping_volume(name) or (names and name not in names):
            continue
        try:
            facts = volume_details(conn, volumes[name])
            facts["import"] = read_import_record(conn, pool, name) if import_record_name(name) in volumes else None
        except libvirt.libvirtError as exc:
            if is_not_found(exc):
                continue  # deleted by another client while the pool was read
            raise
        used = users.get(facts["path"], set()) | users.get((pool_name, name), set())
        facts["used_by"] = sorted(used)
        result.append(facts)
    return result


def main():
    argument_spec = dict(
        pool=dict(type="str", default="default"),
        name=dict(type="list", elements="str"),
    )
    argument_spec.update(URI_ARGUMENT_SPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    check_libraries(module)
    params = module.params
    volumes, error = call_with_connection(
        params["uri"], lambda conn: list_volumes(conn, params["pool"], params["name"])
    )
    if error:
        module.fail_json(msg=error)
    module.exit_json(changed=False, volumes=volumes)


if __name__ == "__main__":
    main()
