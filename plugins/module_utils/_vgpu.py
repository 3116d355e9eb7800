# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""vGPUs: what a GPU offers and who uses a vGPU.

Two kinds, as the NVIDIA driver offers them:

- a mediated device (GPUs before Ada, and any mdev parent): created by writing a
  UUID to ``mdev_supported_types/<type>/create`` of its parent, removed by
  writing 1 to its ``remove``; ``mdevctl`` keeps definitions that recreate it at
  boot (files under ``/etc/mdevctl.d/<parent>/<uuid>``);
- an SR-IOV virtual function given a vGPU type (Ada, Hopper and later with the
  vendor's VFIO driver): ``nvidia/current_vgpu_type`` of the VF holds the type
  ID (0 for none), ``nvidia/creatable_vgpu_types`` the types it can take now.
  Such a VF stays on the vendor's driver, never vfio-pci, and a guest gets it
  with ``managed='no'``. The type does not survive a reboot.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import uuid

from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import domains_with_trees

# The namespace of the UUIDs derived from vGPU names (uuid5), fixed for the collection.
VGPU_NAMESPACE = uuid.UUID("5d4f9a64-9a1e-4b55-8f41-6f0a8b3b2c10")
MDEVCTL_DIR = os.path.join("etc", "mdevctl.d")
_MDEVCTL_TOOLS = ("usr/sbin/mdevctl", "usr/bin/mdevctl", "sbin/mdevctl", "bin/mdevctl")


def vgpu_uuid(name):
    """The stable UUID of the mediated device named ``name``."""
    return str(uuid.uuid5(VGPU_NAMESPACE, name))


def _matches(entry, wanted):
    return wanted in (entry["type"],) or (entry["name"] or "").lower() == wanted.lower()


def mdev_type(view, parent, wanted):
    """The mediated-device type of ``parent`` named ``wanted`` (its ID or its name), or None."""
    return next((t for t in view.devices[parent]["mdev_types"] if _matches(t, wanted)), None)


def sriov_vgpus(view, parent):
    """``{vf: nvidia vGPU attributes}`` of ``parent``'s virtual functions that have them."""
    found = {}
    for vf in view.sysfs.virtual_functions(parent) if view.devices[parent]["sriov_total_vfs"] else []:
        vgpu = view.sysfs.nvidia_vgpu(vf)
        if vgpu is not None:
            found[vf] = vgpu
    return found


def sriov_type(vgpus, wanted, names=None):
    """``(type ID, name)`` of the NVIDIA vGPU type ``wanted`` (ID or name) that the VFs offer or
    have, or None. ``names`` maps type IDs to names known from elsewhere."""
    for vgpu in vgpus.values():
        for entry in vgpu["creatable"]:
            if _matches(entry, wanted):
                return entry["type"], entry["name"]
    for vgpu in vgpus.values():
        if vgpu["current_type"] == wanted:
            return wanted, (names or {}).get(wanted)
    return None


def offered_types(view, parent, vgpus):
    """Every type ``parent`` offers, as words for a message."""
    words = ["%s (%s)" % (t["type"], t["name"]) for t in view.devices[parent]["mdev_types"]]
    seen = set()
    for vgpu in vgpus.values():
        for entry in vgpu["creatable"]:
            if entry["type"] not in seen:
                seen.add(entry["type"])
                words.append("%s (%s)" % (entry["type"], entry["name"]))
    return ", ".join(words) or "none"


def domains_using_mdev(conn, mdev_uuid, running_only=True):
    """Names of the domains with a ``<hostdev type='mdev'>`` of ``mdev_uuid``."""
    users = []
    for name, trees in domains_with_trees(conn, running_only, live_only=running_only):
        for tree in trees:
            for address in tree.findall("./devices/hostdev[@type='mdev']/source/address"):
                if (address.get("uuid") or "").lower() == mdev_uuid.lower():
                    users.append(name)
    return sorted(set(users))


# -- mdevctl definitions (persistent mediated devices) ----------------------------------


def mdevctl_installed(root):
    return any(os.path.isfile(os.path.join(root, tool)) for tool in _MDEVCTL_TOOLS)


def mdevctl_path(root, parent, mdev_uuid):
    return os.path.join(root, MDEVCTL_DIR, parent, mdev_uuid)


def render_mdevctl(type_id):
    """mdevctl's definition of a mediated device of ``type_id`` started at boot (``--auto``)."""
    return json.dumps(dict(mdev_type=type_id, start="auto", attrs=[]), indent=2) + "\n"
