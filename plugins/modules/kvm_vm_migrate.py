#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: kvm_vm_migrate
short_description: Move a VM to another hypervisor, live or offline, with its disks
version_added: 0.1.0
description:
  - Runs on the source hypervisor (O(uri)) and moves the VM O(name) to the
    hypervisor at O(dest_uri). A running (or paused) VM moves live, by libvirt's
    native migration straight between the two QEMU processes, peer to peer (the
    source's libvirtd drives it); it keeps its processes, uptime and network
    address. A stopped VM moves offline; its definition and disks are copied.
  - "Disks are copied unless O(storage=shared). A linked clone (a qcow2 overlay on a
    base volume) copies only its overlay: the base must already exist on the
    destination at the same path (import the same image there first, e.g. with the
    image role); the module creates the overlay there (same base, same size) and
    libvirt copies the overlay's data (VIR_MIGRATE_NON_SHARED_INC), or, offline, the
    module copies the overlay file. A missing base is refused unless
    O(copy_full_chain=true), which copies the missing layers first."
  - Read-only media (the cloud-init seed and other cdroms) are not written by the
    guest, so libvirt does not copy them. With O(readonly_media=copy) the module
    copies each into the destination's pool of the same name (an identical file
    already there is used as it is); with O(readonly_media=detach) the VM arrives
    with those drives empty.
  - The VM is defined on the destination (persistent). The source's definition is
    removed only once the VM runs there (live) or is defined there (offline); the
    source's copied volumes (overlays and media, never shared bases) are deleted
    only when O(remove_source_volumes=true), after that.
  - "Refused with one sentence and nothing changed: a VM with host devices (PCI GPUs,
    SR-IOV VFs, mediated devices), a destination without one of the VM's libvirt
    networks, a running VM whose memory exceeds the destination's free memory, a CPU
    model the destination cannot run, the same VM defined on both hypervisors, a
    destination that already has a file where a disk would go."
  - "A failure midway (the destination's libvirtd dies, the migration network is cut,
    O(timeout) runs out) leaves the VM running on the source with its disks, and the
    module removes the volumes it made on the destination. When the destination
    cannot be reached to remove them, the record it keeps there
    (C(<name>.iaas-migrating) in the pool) lets the next run remove them first."
  - Idempotent - a VM that is on the destination and no longer on the source is
    C(ok). In check mode the module reports what would move and changes nothing.
  - Evacuating a hypervisor that is already down needs shared storage and is not
    done by this module (a VM can only be moved from a running source).
author:
  - iaas.kvm contributors (!UNKNOWN)
options:
  name:
    description:
      - Name of the VM on the source hypervisor.
    type: str
    required: true
  dest_uri:
    description:
      - libvirt URI of the destination hypervisor as the source hypervisor reaches
        it, for example C(qemu+ssh://root@hv2/system) (the hypervisor role's
        migration trust sets up the SSH keys and known hosts it needs).
    type: str
    required: true
  migrate_uri:
    description:
      - Where the migration data (memory and disk copies) goes, for example
        C(tcp://192.168.149.12) - an address of the destination on the network
        meant for migrations. libvirt otherwise uses the destination's host name,
        which may not resolve, or resolve to another network, from the source.
      - Not used for offline moves (the module copies their disks through libvirt's
        connections).
    type: str
  storage:
    description:
      - V(copy) copies the VM's disks to the destination (hypervisors without
        shared storage).
      - V(shared) copies nothing; every disk must already be visible on the
        destination at the same path (shared storage).
    type: str
    choices: [copy, shared]
    default: copy
  copy_full_chain:
    description:
      - With O(storage=copy), copy the layers of a disk's backing chain (its base
        volumes) that the destination lacks, instead of refusing.
    type: bool
    default: false
  readonly_media:
    description:
      - What happens to read-only disks (cdroms, the cloud-init seed).
      - V(copy) puts a copy into the destination's pool of the same name.
      - V(detach) moves the VM with those drives empty.
    type: str
    choices: [copy, detach]
    default: copy
  timeout:
    description:
      - Seconds after which a live migration that has not finished is aborted; the
        VM keeps running on the source and the destination is cleaned up. C(0)
        waits as long as it takes. A migration in post-copy phase cannot be
        aborted.
    type: int
    default: 600
  bandwidth:
    description:
      - Cap of the migration's bandwidth in MiB/s (C(0) is no cap).
    type: int
    default: 0
  auto_converge:
    description:
      - Slow the guest's vCPUs down while it dirties memory faster than it can be
        sent (libvirt's auto-converge), so that busy guests finish.
    type: bool
    default: false
  postcopy:
    description:
      - Switch to post-copy after the first pass over memory - the VM then runs on
        the destination at once and fetches the rest of its memory from there. It
        finishes for any guest, but if the network fails during post-copy the VM is
        lost; it cannot be aborted by O(timeout) then.
      - QEMU needs userfaultfd on the destination for it; where it has none (as in
        the project's lab), the migration fails at its start and the VM stays.
    type: bool
    default: false
  remove_source_volumes:
    description:
      - After a successful move, delete the source's copies of the volumes that were
        copied (overlays, whole volumes and read-only media, never a base volume left
        in place).
    type: bool
    default: false
extends_documentation_fragment:
  - iaas.kvm.libvirt
  - iaas.kvm.libvirt.attributes
notes:
  - The VM's libvirt networks must exist on the destination under the same names;
    a bridge-mode network onto a segment that spans the hypervisors lets the guest
    keep its address. Interfaces of C(type=bridge) are not checked.
  - UEFI variables (NVRAM) are not copied; the destination makes fresh ones from
    the template when the VM next boots there.
  - See C(docs/migration.md) in the collection for draining hypervisors with
    C(playbooks/drain.yml).
seealso:
  - module: iaas.kvm.kvm_vm
  - module: iaas.kvm.kvm_host_info
  - name: libvirt migration
    description: How libvirt migrates domains.
    link: https://libvirt.org/migration.html
"""

EXAMPLES = r"""
- name: Move web1 from hv1 to hv2, live, with its overlay disk and seed
  iaas.kvm.kvm_vm_migrate:
    name: web1
    dest_uri: qemu+ssh://root@hv2/system
    migrate_uri: tcp://192.168.149.12
    remove_source_volumes: true
  delegate_to: hv1
  register: moved

- name: Show how long it took and the downtime
  ansible.builtin.debug:
    msg: "{{ moved.job_stats.time_elapsed }} ms, downtime {{ moved.job_stats.downtime }} ms"

- name: A busy database, capped at 200 MiB/s, given up after 5 minutes
  iaas.kvm.kvm_vm_migrate:
    name: db1
    dest_uri: qemu+ssh://root@hv3/system
    migrate_uri: tcp://10.0.8.13
    bandwidth: 200
    auto_converge: true
    timeout: 300
  delegate_to: hv1

- name: What would move (check mode changes nothing)
  iaas.kvm.kvm_vm_migrate:
    name: web1
    dest_uri: qemu+ssh://root@hv2/system
    migrate_uri: tcp://192.168.149.12
  delegate_to: hv1
  check_mode: true
"""

RETURN = r"""
mode:
  description: C(live) for a running VM, C(offline) for a stopped one, C(none) when nothing moved.
  returned: always
  type: str
  sample: live
source:
  description: Host name of the source hypervisor.
  returned: always
  type: str
  sample: hv1
destination:
  description: Host name of the destination hypervisor.
  returned: always
  type: str
  sample: hv2
state:
  description: State of the VM on the destination after the move (C(running), C(shutoff), ...).
  returned: always
  type: str
  sample: running
actions:
  description: What was done, or in check mode what would be done, in order.
  returned: always
  type: list
  elements: str
  sample: ["create iaas-test.qcow2 on the destination (overlay of debian-12.qcow2)", "migrate web1 live to hv2"]
volumes:
  description:
    - The volumes the move involves - each with C(path), C(role) (C(overlay),
      C(whole), C(base), C(media), C(shared) or C(base-in-place)), C(capacity),
      C(allocation) and C(size) (bytes of the source's file) and C(copied) (true
      when it was copied; in check mode, when it would be).
  returned: always
  type: list
  elements: dict
  sample: [{path: /var/lib/libvirt/images/web1.qcow2, role: overlay, capacity: 10737418240, allocation: 52428800, size: 52756480, copied: true}]
job_stats:
  description:
    - libvirt's statistics of the completed live migration (empty for an offline
      move or when nothing moved), in bytes and milliseconds - C(time_elapsed),
      C(downtime), C(setup_time), C(data_total), C(data_processed),
      C(memory_total), C(memory_processed), C(memory_iteration),
      C(memory_dirty_rate) (pages/s), C(disk_total), C(disk_processed) (bytes of
      disk data sent), C(auto_converge_throttle), where libvirt gives them.
  returned: always
  type: dict
  sample: {time_elapsed: 3021, downtime: 41, data_processed: 61234567, disk_processed: 2883584}
bytes_copied:
  description: Bytes the module copied itself through libvirt's streams (offline disks, media, missing bases).
  returned: always
  type: int
  sample: 393216
"""

import contextlib
import json
import threading
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.iaas.kvm.plugins.module_utils._diff import DifferenceTracker
from ansible_collections.iaas.kvm.plugins.module_utils._domain_life import domain_state, undefine
from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import (
    URI_ARGUMENT_SPEC,
    LibvirtModuleError,
    ModuleManager,
    check_libraries,
    connect,
    domain_disk_sources,
    domains_with_trees,
    error_message,
    exit_module,
    libvirt,
    lookup,
    parse_xml,
    run_manager,
    to_xml,
)
from ansible_collections.iaas.kvm.plugins.module_utils._migration import (
    cpu_incompatibility,
    detach_media,
    host_uuid,
    job_stats,
    memory_shortfall,
    missing_networks,
    passed_through_devices,
    volume_disks_as_files,
)
from ansible_collections.iaas.kvm.plugins.module_utils._names import validate_name
from ansible_collections.iaas.kvm.plugins.module_utils._storage import (
    MIGRATING_SUFFIX,
    backing_chain,
    copy_volume_content,
    download_bytes,
    download_sha256,
    get_pool,
    pool_target_path,
    upload_bytes,
    volume_xml,
)

# How often the watcher of a live migration reads the job's progress (seconds).
_POLL = 0.25


def volume_sizes(vol):
    """Capacity, allocation and file size (bytes) of a volume, read before anything moves."""
    _kind, capacity, allocation = vol.info()
    try:
        size = vol.infoFlags(libvirt.VIR_STORAGE_VOL_GET_PHYSICAL)[2]
    except (libvirt.libvirtError, AttributeError):
        size = allocation
    return dict(capacity=int(capacity), allocation=int(allocation), size=int(size))


class Disk:
    """One volume of the move: where it is on the source, and what the destination needs."""

    def __init__(self, role, src_vol, pool, target=None, backing=None):
        self.role = role  # overlay, whole, base, media, shared, base-in-place
        self.src_vol = src_vol
        self.path = src_vol.path() if src_vol is not None else None
        self.pool = pool  # the pool's name (the same name on both sides)
        self.target = target  # the guest's device (vda) for disks
        self.backing = backing  # (path, format) of an overlay's base
        self.leftover = None  # a volume of an earlier, failed attempt at the path
        self.sizes = volume_sizes(src_vol)

    @property
    def copied(self):
        return self.role in ("overlay", "whole", "base", "media")

    def facts(self, copied):
        return dict(self.sizes, path=self.path, role=self.role, copied=bool(copied and self.copied))


class MigrateManager(ModuleManager):
    def __init__(self, module, conn):
        super().__init__(module, conn)
        self.tracker = DifferenceTracker()
        self.dest = None
        self.disks = []
        self.created = []  # (pool name, volume name) made on the destination, in order
        self.record_pool = None
        self.stats = {}
        self.bytes_copied = 0
        self.detached = []

    # --- the story -------------------------------------------------------------------

    def run(self):
        validate_name(self.name, "VM name")
        self.dest = connect(self.params["dest_uri"])
        try:
            return self.move()
        finally:
            with contextlib.suppress(libvirt.libvirtError):
                self.dest.close()

    def move(self):
        src_host, dest_host = self.conn.getHostname(), self.dest.getHostname()
        src_uuid = host_uuid(self.conn)
        if src_uuid and src_uuid == host_uuid(self.dest):
            raise LibvirtModuleError("The destination %s is the source hypervisor itself." % self.params["dest_uri"])
        dom = lookup(self.conn.lookupByName, self.name)
        there = lookup(self.dest.lookupByName, self.name)
        if dom is None and there is not None:
            return self.result(src_host, dest_host, "none", domain_state(there)[0])
        if dom is None:
            raise LibvirtModuleError(
                "The VM %s is neither on this hypervisor (%s) nor on %s." % (self.name, src_host, dest_host)
            )
        if there is not None and dom.isActive() and not there.isPersistent():
            self.refuse(
                "The destination %s holds a half-made copy of the VM %s from a migration that failed; its libvirtd "
                "removes it shortly: run again then." % (dest_host, self.name)
            )
        if there is not None:
            self.refuse(
                "The VM %s is defined on both %s and %s; remove the copy that should not be there first."
                % (self.name, src_host, dest_host)
            )
        live = bool(dom.isActive())
        tree = parse_xml(dom.XMLDesc(0 if live else libvirt.VIR_DOMAIN_XML_INACTIVE))
        self.preflight(dom, tree, live, dest_host)
        self.plan(tree, dest_host)
        mode = "live" if live else "offline"
        self.tracker.add("hypervisor", src_host, dest_host)
        try:
            self.prepare_destination(dom)
            if live:
                self.do_live(dom, dest_host)
            else:
                self.do_offline(dom, dest_host)
        except (LibvirtModuleError, libvirt.libvirtError) as exc:
            reason = (str(exc) if isinstance(exc, LibvirtModuleError) else error_message(exc)).rstrip(".")
            raise LibvirtModuleError(self.failed_midway(dom, reason, src_host)) from exc
        self.finish_source(dom)
        moved = None if self.check else lookup(self.dest.lookupByName, self.name)
        return self.result(src_host, dest_host, mode, domain_state(moved if moved is not None else dom)[0])

    def result(self, src_host, dest_host, mode, state):
        result = dict(
            changed=self.changed,
            mode=mode if self.changed else "none",
            source=src_host,
            destination=dest_host,
            state=state,
            actions=self.actions,
            volumes=[disk.facts(self.changed) for disk in self.disks],
            job_stats=self.stats,
            bytes_copied=self.bytes_copied,
        )
        if self.module._diff:
            result["diff"] = self.tracker.diff()
        return result

    # --- refusals ------------------------------------------------------------------

    def preflight(self, dom, tree, live, dest_host):
        inactive = parse_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)) if dom.isPersistent() else tree
        devices = passed_through_devices(tree) + [
            d for d in passed_through_devices(inactive) if d not in passed_through_devices(tree)
        ]
        if devices:
            self.refuse(
                "The VM %s holds host devices (%s) that cannot move with it; stop it, remove them from its definition "
                "and move it then, or leave it on this hypervisor." % (self.name, ", ".join(devices))
            )
        missing = missing_networks(self.dest, tree)
        if missing:
            self.refuse("The destination %s lacks the VM's networks: %s." % (dest_host, ", ".join(missing)))
        if not live:
            return
        short = memory_shortfall(self.dest, dom)
        if short:
            self.refuse(
                "The destination %s has %d MiB of free memory and the VM %s needs %d MiB."
                % (dest_host, short[1], self.name, short[0])
            )
        cpu = cpu_incompatibility(self.conn, self.dest, tree)
        if cpu:
            self.refuse("The VM %s cannot run on %s: %s." % (self.name, dest_host, cpu))

    # --- what moves ------------------------------------------------------------------

    def plan(self, tree, dest_host):
        leftovers = self.leftovers()
        for disk in tree.findall("./devices/disk"):
            source = disk.find("./source")
            if source is None:
                continue  # an empty drive
            readonly = disk.get("device") == "cdrom" or disk.find("./readonly") is not None
            target = disk.find("./target").get("dev") if disk.find("./target") is not None else None
            if readonly and self.params["readonly_media"] == "detach":
                continue
            path, src_vol = self.source_volume(disk, source)
            if self.params["storage"] == "shared" or disk.find("./shareable") is not None:
                if lookup(self.dest.storageVolLookupByPath, path) is None:
                    self.refuse(
                        "The destination %s does not see the disk %s of the VM (storage: shared)." % (dest_host, path)
                    )
                continue
            if src_vol is None:
                self.refuse(
                    "The disk %s of the VM is not a volume of an active storage pool here, so it cannot be copied."
                    % path
                )
            pool = src_vol.storagePoolLookupByVolume().name()
            if readonly:
                self.plan_media(src_vol, pool, leftovers, dest_host)
            else:
                self.plan_disk(src_vol, pool, target, leftovers, dest_host)
        if self.params["readonly_media"] == "detach":
            self.detached = detach_media(tree)

    def source_volume(self, disk, source):
        if disk.get("type") == "volume":
            pool = get_pool(self.conn, source.get("pool"))
            vol = self.call(
                "find the volume %s" % source.get("volume"), pool.storageVolLookupByName, source.get("volume")
            )
            return vol.path(), vol
        path = source.get("file") or source.get("dev")
        return path, lookup(self.conn.storageVolLookupByPath, path) if path else None

    def dest_pool(self, pool, dest_host):
        there = lookup(self.dest.storagePoolLookupByName, pool)
        if there is None or not there.isActive():
            self.refuse("The destination %s has no active storage pool %s for the VM's disks." % (dest_host, pool))
        if pool_target_path(there) != pool_target_path(get_pool(self.conn, pool)):
            self.refuse(
                "The storage pool %s has another directory on %s than here; disks keep their paths." % (pool, dest_host)
            )
        get_pool(self.dest, pool)  # refreshed: files made outside libvirt show up
        return there

    def claim(self, disk, leftovers, dest_host):
        """The destination must not hold a file at the disk's path, unless an earlier
        failed attempt of this module left it there (its record says so)."""
        found = lookup(self.dest.storageVolLookupByPath, disk.path)
        if found is None:
            return
        if disk.path in leftovers and not self.dest_users(disk.path):
            disk.leftover = found
            return
        self.refuse(
            "The destination %s already has %s, where the VM's disk would go; remove it there or use storage: shared."
            % (dest_host, disk.path)
        )

    def plan_disk(self, src_vol, pool, target, leftovers, dest_host):
        self.dest_pool(pool, dest_host)
        chain = backing_chain(self.conn, src_vol)
        missing = [layer for layer in chain if lookup(self.dest.storageVolLookupByPath, layer["path"]) is None]
        if missing and not self.params["copy_full_chain"]:
            self.refuse(
                "The destination %s lacks %s, the base of the VM's disk %s; import the same image there first, "
                "or set copy_full_chain to copy it." % (dest_host, missing[0]["path"], src_vol.path())
            )
        for layer in reversed(missing):  # the deepest first
            if layer["volume"] is None:
                self.refuse("The base %s of the VM's disk is not a volume of a storage pool here." % layer["path"])
            base_pool = self.conn.storagePoolLookupByName(layer["pool"])
            base = Disk("base", base_pool.storageVolLookupByName(layer["volume"]), layer["pool"])
            self.dest_pool(layer["pool"], dest_host)
            self.claim(base, leftovers, dest_host)
            self.disks.append(base)
        for layer in chain:
            if layer not in missing and layer["volume"] is not None:
                self.disks.append(Disk("base-in-place", self.conn.storageVolLookupByPath(layer["path"]), layer["pool"]))
        backing = (chain[0]["path"], chain[0]["format"] or "qcow2") if chain else None
        disk = Disk("overlay" if backing else "whole", src_vol, pool, target, backing)
        self.claim(disk, leftovers, dest_host)
        self.disks.append(disk)

    def plan_media(self, src_vol, pool, leftovers, dest_host):
        self.dest_pool(pool, dest_host)
        disk = Disk("media", src_vol, pool)
        found = lookup(self.dest.storageVolLookupByPath, disk.path)
        if found is not None and disk.path not in leftovers and self.same_file(found, src_vol):
            disk.role = "shared"  # the same file is already there
            self.disks.append(disk)
            return
        self.claim(disk, leftovers, dest_host)
        self.disks.append(disk)

    def same_file(self, there, here):
        return there.info()[1] == here.info()[1] and download_sha256(self.dest, there) == download_sha256(
            self.conn, here
        )

    def dest_users(self, path):
        users = []
        for name, trees in domains_with_trees(self.dest, running_only=False, live_only=False):
            if any(src == path for tree in trees for src, _p, _v in domain_disk_sources(tree)):
                users.append(name)
        return users

    # --- the record of volumes made on the destination --------------------------------

    def record_name(self):
        return self.name + MIGRATING_SUFFIX

    def leftovers(self):
        """Paths an earlier failed attempt made on the destination (from its records)."""
        paths = set()
        for pool in self.dest.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
            vol = lookup(pool.storageVolLookupByName, self.record_name())
            if vol is None:
                continue
            with contextlib.suppress(ValueError, LibvirtModuleError):
                record = json.loads(download_bytes(self.dest, vol, 1024 * 1024).decode("utf-8"))
                paths.update(record.get("volumes", []))
        return paths

    def write_record(self):
        record = dict(vm=self.name, volumes=[d.path for d in self.disks if d.copied])
        pool = get_pool(self.dest, self.record_pool)
        upload_bytes(self.dest, pool, self.record_name(), (json.dumps(record, sort_keys=True) + "\n").encode("utf-8"))

    def remove_records(self):
        for pool in self.dest.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
            vol = lookup(pool.storageVolLookupByName, self.record_name())
            if vol is not None:
                vol.delete(0)

    # --- the move ------------------------------------------------------------------------

    def prepare_destination(self, dom):
        """Remove what an earlier attempt left, then create the volumes the VM needs there."""
        copies = [d for d in self.disks if d.copied]
        if not copies:
            return
        self.record_pool = copies[0].pool
        for disk in copies:
            if disk.leftover is not None:
                self.do(
                    "remove %s, left on the destination by an earlier attempt" % disk.path,
                    "remove " + disk.path,
                    disk.leftover.delete,
                    0,
                )
        if not self.check:
            self.write_record()
        live = bool(dom.isActive())
        for disk in copies:
            self.create_on_destination(disk, live)

    def create_on_destination(self, disk, live):
        """Make the disk's volume on the destination: an empty overlay or disk that the live
        migration fills, or, for everything else, a copy of the file through the streams."""
        pool = self.dest.storagePoolLookupByName(disk.pool)
        name = disk.src_vol.name()
        capacity = disk.src_vol.info()[1]
        filled_by_migration = live and disk.role in ("overlay", "whole")
        if filled_by_migration and disk.role == "overlay":
            xml = volume_xml(name, capacity, "qcow2", disk.backing[0], disk.backing[1])
            what = "create %s on the destination (overlay of %s, %d bytes)" % (disk.path, disk.backing[0], capacity)
        elif filled_by_migration:
            fmt = parse_xml(disk.src_vol.XMLDesc(0)).find("./target/format")
            xml = volume_xml(name, capacity, fmt.get("type") if fmt is not None else "raw")
            what = "create %s on the destination (%d bytes)" % (disk.path, capacity)
        else:
            xml = volume_xml(name, 0, "raw")  # an empty file that the copy fills
            what = "copy %s to the destination (%s)" % (disk.path, disk.role)
        if self.check:
            self.act(what)
            return
        vol = self.call("create %s on the destination" % disk.path, pool.createXML, xml, 0)
        self.created.append((disk.pool, name))
        if not filled_by_migration:
            self.bytes_copied += self.call(
                "copy %s to the destination" % disk.path, copy_volume_content, self.conn, disk.src_vol, self.dest, vol
            )
            get_pool(self.dest, disk.pool)  # libvirt reads the copied file's format and backing
        self.act(what)

    def migrate_params(self, dom, live):
        params = {}
        if live and self.params["migrate_uri"]:
            params[libvirt.VIR_MIGRATE_PARAM_URI] = self.params["migrate_uri"]
        if live and self.params["bandwidth"]:
            params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = self.params["bandwidth"]
        targets = [d.target for d in self.disks if d.role in ("overlay", "whole") and d.target]
        if live and targets:
            params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = targets
        if self.detached:
            persistent = parse_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE))
            detach_media(persistent)
            params[libvirt.VIR_MIGRATE_PARAM_PERSIST_XML] = to_xml(persistent)
            if not live:
                # An offline migration defines what its Begin phase was given.
                params[libvirt.VIR_MIGRATE_PARAM_DEST_XML] = to_xml(persistent)
        if live and (self.detached or targets):
            # The running definition for the destination: libvirt's check that an incrementally
            # copied disk exists there reads the path of a file disk only, so disks given as a
            # pool's volume run there as the same file (the persistent definition keeps them).
            running = parse_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE | libvirt.VIR_DOMAIN_XML_MIGRATABLE))
            if self.detached:
                detach_media(running)
            volume_disks_as_files(running, self.volume_path)
            params[libvirt.VIR_MIGRATE_PARAM_DEST_XML] = to_xml(running)
        return params, targets

    def volume_path(self, pool, volume):
        return self.call("find the volume %s" % volume, get_pool(self.conn, pool).storageVolLookupByName, volume).path()

    def do_live(self, dom, dest_host):
        params, targets = self.migrate_params(dom, True)
        # Peer to peer: the source's libvirtd drives the migration over its own connection to the
        # destination's, with keepalive, so a destination that dies ends the job at once.
        flags = libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_PEER2PEER
        if targets:
            full = any(d.role == "whole" for d in self.disks)
            flags |= libvirt.VIR_MIGRATE_NON_SHARED_DISK if full else libvirt.VIR_MIGRATE_NON_SHARED_INC
        if self.params["auto_converge"]:
            flags |= libvirt.VIR_MIGRATE_AUTO_CONVERGE
        if self.params["postcopy"]:
            flags |= libvirt.VIR_MIGRATE_POSTCOPY
        what = "migrate %s live to %s" % (self.name, dest_host)
        if self.check:
            self.act(what)
            return
        watcher = Watcher(dom, self.params["timeout"], self.params["postcopy"])
        watcher.start()
        try:
            dom.migrateToURI3(self.params["dest_uri"], params, flags)
        except libvirt.libvirtError as exc:
            if watcher.aborted:
                raise LibvirtModuleError(
                    "the migration did not finish within %d seconds and was aborted (%s)"
                    % (self.params["timeout"], error_message(exc).rstrip("."))
                ) from exc
            raise
        finally:
            watcher.stop()
        moved = lookup(self.dest.lookupByName, self.name)
        if moved is None or not moved.isActive():
            raise LibvirtModuleError("the VM does not run on %s after the migration" % dest_host)
        with contextlib.suppress(libvirt.libvirtError):
            self.stats = job_stats(dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED))
        if not self.stats:
            with contextlib.suppress(libvirt.libvirtError):
                self.stats = job_stats(moved.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED))
        if not self.stats:
            self.stats = watcher.last
        self.act(what)

    def do_offline(self, dom, dest_host):
        params, _targets = self.migrate_params(dom, False)
        flags = libvirt.VIR_MIGRATE_OFFLINE | libvirt.VIR_MIGRATE_PERSIST_DEST
        self.do(
            "define %s on %s (offline)" % (self.name, dest_host),
            "define %s on %s" % (self.name, dest_host),
            dom.migrate3,
            self.dest,
            params,
            flags,
        )
        if not self.check and lookup(self.dest.lookupByName, self.name) is None:
            raise LibvirtModuleError("the VM is not defined on %s after the offline migration" % dest_host)

    def finish_source(self, dom):
        """The VM runs (or is defined) on the destination: remove its definition here, then,
        when asked, its copied volumes; then the record on the destination."""
        uefi = (
            parse_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).find("./os/nvram") is not None
            if dom.isPersistent()
            else False
        )
        if dom.isActive() and not self.check:
            raise LibvirtModuleError(
                "The VM %s still runs on the source after the migration; its definition is kept." % self.name
            )
        if dom.isPersistent():
            what = "remove the definition of %s from the source" % self.name
            if self.check:
                self.act(what)
            else:
                undefine(dom, uefi)
                self.act(what)
        if self.params["remove_source_volumes"]:
            for disk in self.disks:
                if disk.copied and disk.role != "base":
                    self.do("delete %s on the source" % disk.path, "delete " + disk.path, disk.src_vol.delete, 0)
        if not self.check:
            with contextlib.suppress(libvirt.libvirtError):
                self.remove_records()

    def failed_midway(self, dom, reason, src_host):
        """Clean up the destination after a failure; return the sentence to fail with."""
        left = []
        dest = self.dest
        with contextlib.suppress(libvirt.libvirtError):
            if not dest.isAlive():
                dest = None
        if dest is None:
            with contextlib.suppress(LibvirtModuleError):
                dest = self.dest = connect(self.params["dest_uri"])
        for pool_name, name in reversed(self.created):
            try:
                if dest is None:
                    raise LibvirtModuleError("no connection")
                there = lookup(dest.lookupByName, self.name)
                if there is not None and there.isActive():
                    raise LibvirtModuleError("the VM runs there")
                dest.storagePoolLookupByName(pool_name).storageVolLookupByName(name).delete(0)
                self.act("remove %s/%s from the destination (clean-up)" % (pool_name, name))
            except (LibvirtModuleError, libvirt.libvirtError):
                left.append("%s/%s" % (pool_name, name))
        if not left and dest is not None:
            with contextlib.suppress(libvirt.libvirtError):
                self.remove_records()
        try:
            state = domain_state(dom)[0]
        except libvirt.libvirtError:
            state = "unknown"
        message = "The VM %s did not move: %s. It is %s on %s with its disks" % (self.name, reason, state, src_host)
        if left:
            return message + "; the destination could not be cleaned (%s): the next run removes them." % ", ".join(left)
        return message + "; the volumes made on the destination were removed."


class Watcher(threading.Thread):
    """Reads a live migration's progress while it runs: aborts it after ``timeout``
    seconds, switches it to post-copy after the first pass over memory."""

    def __init__(self, dom, timeout, postcopy):
        super().__init__(daemon=True)
        self.dom = dom
        self.timeout = timeout
        self.postcopy = postcopy
        self.done = threading.Event()
        self.aborted = False
        self.last = {}

    def run(self):
        started = time.monotonic()
        switched = False
        while not self.done.wait(_POLL):
            try:
                stats = self.dom.jobStats(0)
            except libvirt.libvirtError:
                continue
            if stats.get("type", 0) != libvirt.VIR_DOMAIN_JOB_NONE:
                self.last = job_stats(stats)
            if self.postcopy and not switched and stats.get("memory_iteration", 0) >= 1:
                with contextlib.suppress(libvirt.libvirtError):
                    self.dom.migrateStartPostCopy(0)
                    switched = True
            if self.timeout and not switched and time.monotonic() - started > self.timeout:
                with contextlib.suppress(libvirt.libvirtError):
                    self.dom.abortJob()
                    self.aborted = True
                return

    def stop(self):
        self.done.set()
        self.join(5)


def main():
    argument_spec = dict(
        name=dict(type="str", required=True),
        dest_uri=dict(type="str", required=True),
        migrate_uri=dict(type="str"),
        storage=dict(type="str", choices=["copy", "shared"], default="copy"),
        copy_full_chain=dict(type="bool", default=False),
        readonly_media=dict(type="str", choices=["copy", "detach"], default="copy"),
        timeout=dict(type="int", default=600),
        bandwidth=dict(type="int", default=0),
        auto_converge=dict(type="bool", default=False),
        postcopy=dict(type="bool", default=False),
        remove_source_volumes=dict(type="bool", default=False),
    )
    argument_spec.update(URI_ARGUMENT_SPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    check_libraries(module)
    for option in ("timeout", "bandwidth"):
        if module.params[option] < 0:
            module.fail_json(
                msg="%s must be 0 or more, not %d." % (option, module.params[option]), changed=False, actions=[]
            )
    manager, result, error = run_manager(module, MigrateManager)
    exit_module(module, manager, result, error)


if __name__ == "__main__":
    main()
