#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: kvm_pool
short_description: Declarative libvirt storage pools (directory pools)
version_added: 0.1.0
description:
  - Defines, starts, stops and removes a libvirt storage pool, and sets whether
    libvirtd starts it on boot.
  - New pools are directory pools (type C(dir)) at O(path). When the directory is
    missing, libvirt creates it (with its parents) when the pool starts, owned by
    the user libvirtd runs as (root) with mode C(0711), as
    C(/var/lib/libvirt/images) is; an existing directory keeps its owner and mode.
    The directory is made by libvirtd, so this works against a remote O(uri) too.
  - An existing pool of another type (logical, NFS, ...) can be started, stopped,
    set to autostart and removed; O(path) then must be omitted.
  - The pool is compared by its parsed definition (type, target path), active state
    and autostart flag, so a converged pool reports no change, in check mode too.
author:
  - iaas.kvm contributors (!UNKNOWN)
options:
  name:
    description:
      - "Name of the pool (letters, digits and C(_ . + : @ -))."
    type: str
    required: true
  state:
    description:
      - V(present) defines the pool (and starts it with O(active=true)).
      - V(absent) stops and undefines it. An active pool that still holds volumes
        is refused unless O(force=true), which deletes its volumes first. The
        directory of an active pool is removed once it is empty. An inactive
        pool is only undefined (libvirt cannot list the volumes of an inactive
        pool, so its directory and files are left as they are).
      - Removing a pool that does not exist is not an error.
    type: str
    choices: [present, absent]
    default: present
  path:
    description:
      - Absolute path of the pool's directory on the hypervisor.
      - Needed to define a new pool. An existing pool at another path is refused
        (remove it first; its volumes are not moved); so is a path that another
        pool already uses.
    type: path
  active:
    description:
      - Whether the pool is started. Volumes of an inactive pool cannot be used.
    type: bool
    default: true
  autostart:
    description:
      - Whether libvirtd starts the pool when it starts.
    type: bool
    default: true
  force:
    description:
      - With O(state=absent), delete the volumes the pool holds (overlays before
        the volumes they are built on), even volumes that VMs use, then the pool.
    type: bool
    default: false
extends_documentation_fragment:
  - iaas.kvm.libvirt
  - iaas.kvm.libvirt.attributes
seealso:
  - module: iaas.kvm.kvm_volume
  - module: iaas.kvm.kvm_volume_info
  - name: libvirt storage pool XML format
    description: The definition libvirt keeps for a pool.
    link: https://libvirt.org/formatstorage.html
"""

EXAMPLES = r"""
- name: The default pool at /var/lib/libvirt/images, started and started on boot
  iaas.kvm.kvm_pool:
    name: default
    path: /var/lib/libvirt/images

- name: A pool for base images on a second disk, created when missing
  iaas.kvm.kvm_pool:
    name: images
    path: /srv/kvm/images
    autostart: true

- name: Stop a pool without removing it
  iaas.kvm.kvm_pool:
    name: images
    active: false

- name: Remove a pool that must be empty
  iaas.kvm.kvm_pool:
    name: scratch
    state: absent

- name: Remove a pool and every volume in it
  iaas.kvm.kvm_pool:
    name: scratch
    state: absent
    force: true
"""

RETURN = r"""
pool:
  description:
    - The pool after the task, read back from libvirt, with the same keys as each
      entry of the C(pools) list of M(iaas.kvm.kvm_pool_info) (C(name), C(uuid),
      C(type), C(path), C(active), C(persistent), C(autostart), and in bytes
      C(capacity), C(allocation), C(available), and C(volume_count); these four
      are null while the pool is inactive).
    - In check mode, as the task would leave it (C(uuid) is null for a pool it
      would define).
    - Empty after O(state=absent).
  returned: always
  type: dict
  sample:
    name: default
    uuid: 4f373f00-4cf0-44ca-b3fc-5a6b8979d97e
    type: dir
    path: /var/lib/libvirt/images
    active: true
    persistent: true
    autostart: true
    capacity: 270553174016
    allocation: 24361435136
    available: 246191738880
    volume_count: 3
deleted_volumes:
  description: Volumes that O(state=absent) with O(force=true) deleted (or would delete in check mode).
  returned: always
  type: list
  elements: str
  sample: [web1.qcow2, debian-12.qcow2]
actions:
  description: What the module did (or would do in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: [defined, started, autostart on]
"""

import posixpath

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.iaas.kvm.plugins.module_utils._diff import DifferenceTracker, state_diff
from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import (
    URI_ARGUMENT_SPEC,
    LibvirtModuleError,
    ModuleManager,
    check_libraries,
    error_message,
    etree,
    exit_module,
    libvirt,
    lookup,
    parse_xml,
    run_manager,
    to_xml,
)
from ansible_collections.iaas.kvm.plugins.module_utils._names import validate_name
from ansible_collections.iaas.kvm.plugins.module_utils._storage import (
    overlays_first,
    pool_facts,
    pool_target_path,
)


def argument_spec():
    spec = dict(
        name=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        path=dict(type="path"),
        active=dict(type="bool", default=True),
        autostart=dict(type="bool", default=True),
        force=dict(type="bool", default=False),
    )
    spec.update(URI_ARGUMENT_SPEC)
    return spec


def normalise_path(path):
    """The pool path as compared: absolute, without a trailing slash or ``..``."""
    if not path.startswith("/"):
        raise LibvirtModuleError("The pool path %r must be absolute." % path)
    return posixpath.normpath(path)


def dir_pool_xml(name, path):
    pool = etree.Element("pool", type="dir")
    etree.SubElement(pool, "name").text = name
    target = etree.SubElement(pool, "target")
    etree.SubElement(target, "path").text = path
    return to_xml(pool)


class PoolManager(ModuleManager):
    """Reads the pool, compares it with the task, and converges it."""

    def __init__(self, module, conn):
        super().__init__(module, conn)
        self.tracker = DifferenceTracker()
        self.diff = None
        self.deleted = []

    def change(self, action, what, pool, method, *args):
        """:meth:`ModuleManager.do` of ``pool.<method>(*args)``, ``what`` a verb such as
        ``"stop"``; ``pool`` is None only in check mode, for a pool not defined yet."""
        if pool is None:
            self.act(action)
            return None
        return self.do(action, "%s pool %s" % (what, self.name), getattr(pool, method), *args)

    # --- checks (read only) --------------------------------------------------

    def path_in_use(self, path):
        for other in self.conn.listAllStoragePools(0):
            if other.name() == self.name:
                continue
            other_path = pool_target_path(other)
            if other_path and posixpath.normpath(other_path) == path:
                raise LibvirtModuleError("The path %s is already the target of storage pool %s." % (path, other.name()))

    # --- states --------------------------------------------------------------

    def present(self):
        path = normalise_path(self.params["path"]) if self.params["path"] else None
        pool = lookup(self.conn.storagePoolLookupByName, self.name)
        if pool is None:
            if path is None:
                raise LibvirtModuleError("The storage pool %s does not exist; path is needed to define it." % self.name)
            self.path_in_use(path)
            return self.create(path)

        tree = parse_xml(pool.XMLDesc(0))
        have_path = tree.findtext("./target/path")
        if path is not None:
            if tree.get("type") != "dir":
                raise LibvirtModuleError(
                    "The storage pool %s is a %s pool; path applies to directory pools only, so omit it."
                    % (self.name, tree.get("type"))
                )
            if posixpath.normpath(have_path or "") != path:
                raise LibvirtModuleError(
                    "The storage pool %s already exists at %s, not %s; remove it first (its volumes are not moved)."
                    % (self.name, have_path, path)
                )
        active = bool(pool.isActive())
        persistent = bool(pool.isPersistent())
        autostart = bool(pool.autostart()) if persistent else False
        self.tracker.add("path", have_path, have_path, compare=False)
        self.tracker.add("persistent", persistent, True)
        self.tracker.add("active", active, self.params["active"])
        self.tracker.add("autostart", autostart, self.params["autostart"])

        if not persistent:
            xml = etree.tostring(tree, encoding="unicode")
            pool = self.do("defined", "define pool %s" % self.name, self.conn.storagePoolDefineXML, xml, 0) or pool
        if self.params["active"] and not active:
            self.start(pool)
        elif active and not self.params["active"]:
            self.change("stopped", "stop", pool, "destroy")
        self.set_autostart(pool, autostart)
        return self.result(pool)

    def create(self, path):
        self.diff = state_diff(None, dict(path=path, active=self.params["active"], autostart=self.params["autostart"]))
        xml = dir_pool_xml(self.name, path)
        pool = self.do("defined", "define pool %s" % self.name, self.conn.storagePoolDefineXML, xml, 0)
        if self.params["active"]:
            self.start(pool)
        self.set_autostart(pool, False)
        if pool is None:
            return self.result(None, predicted=dict(path=path))
        return self.result(pool)

    def start(self, pool):
        """Start the pool; libvirt makes its directory (mode 0711) when it is missing."""
        if not self.check:
            # For a directory pool, build only creates a missing directory; an
            # existing one keeps its owner and mode (the definition sets none).
            self.call("build the directory of pool %s" % self.name, pool.build, 0)
        self.change("started", "start", pool, "create", 0)

    def set_autostart(self, pool, current):
        want = self.params["autostart"]
        if current != want:
            self.change("autostart %s" % ("on" if want else "off"), "set autostart of", pool, "setAutostart", int(want))

    def absent(self):
        pool = lookup(self.conn.storagePoolLookupByName, self.name)
        if pool is None:
            return self.result(None)
        before = pool_facts(pool)
        self.diff = state_diff(before, None)
        persistent = before["persistent"]
        if before["active"]:
            self.call("refresh pool %s" % self.name, pool.refresh, 0)
            volumes = overlays_first(pool.listAllVolumes(0))
            remove_dir = persistent and before["type"] == "dir"
            if volumes and not self.params["force"]:
                names = sorted(vol.name() for vol in volumes)
                shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
                self.refuse(
                    "The storage pool %s still holds %d volume(s) (%s); delete them first or set force: true."
                    % (self.name, len(names), shown),
                    actions=["deleted volume %s" % vol.name() for vol in volumes]
                    + ["stopped"]
                    + (["removed directory %s" % before["path"]] if remove_dir else [])
                    + (["undefined"] if persistent else []),
                )
            for vol in volumes:
                self.do(
                    "deleted volume %s" % vol.name(),
                    "delete volume %s of pool %s" % (vol.name(), self.name),
                    vol.delete,
                    0,
                )
                self.deleted.append(vol.name())
            self.change("stopped", "stop", pool, "destroy")
            if remove_dir:
                if not self.check:
                    try:
                        pool.delete(0)
                    except libvirt.libvirtError as exc:
                        self.warnings.append(
                            "The directory %s of pool %s was left in place: %s"
                            % (before["path"], self.name, error_message(exc))
                        )
                self.actions.append("removed directory %s" % before["path"])
        if persistent:
            self.change("undefined", "undefine", pool, "undefine")
        return self.result(None)

    # --- output --------------------------------------------------------------

    def result(self, pool, predicted=None):
        facts = {}
        if self.params["state"] == "present":
            if pool is not None and not (self.check and self.changed):
                facts = pool_facts(self.conn.storagePoolLookupByName(self.name))
            else:
                facts = self.predicted(pool, predicted or {})
        result = dict(changed=self.changed, pool=facts, deleted_volumes=self.deleted, actions=self.actions)
        if self.module._diff:
            result["diff"] = self.diff if self.diff is not None else self.tracker.diff()
        return result

    def predicted(self, pool, known):
        """Check mode: the pool as this task would leave it."""
        if pool is not None:
            facts = pool_facts(pool)
        else:
            facts = dict(
                name=self.name,
                uuid=None,
                type="dir",
                path=known.get("path"),
                capacity=None,
                allocation=None,
                available=None,
                volume_count=None,
            )
        facts.update(persistent=True, active=self.params["active"], autostart=self.params["autostart"])
        if not self.params["active"]:
            facts.update(capacity=None, allocation=None, available=None, volume_count=None)
        return facts

    def run(self):
        validate_name(self.name, "pool name")
        if self.params["state"] == "absent":
            return self.absent()
        return self.present()


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    check_libraries(module)
    exit_module(module, *run_manager(module, PoolManager))


if __name__ == "__main__":
    main()
