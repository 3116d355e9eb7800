#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: kvm_volume
short_description: libvirt storage volumes, linked clones, image imports and grow-only resize
version_added: 0.1.0
description:
  - Creates, imports, grows and deletes a volume in a libvirt storage pool.
  - B(Blank volume.) With O(capacity) alone, an empty qcow2 or sparse raw volume.
  - B(Linked clone.) With O(backing_volume), a qcow2 overlay whose backing file is
    that base volume. Creating it costs the same for a 2 GB and a 200 GB base (no
    data is copied); the guest writes to the overlay and the base stays unchanged.
    Its capacity may be larger than the base's (cloud-init then grows the guest's
    file system). An existing volume with another backing file, or none, is an
    error; it is never replaced silently.
  - B(Import.) With O(source), a full copy of an image file on the hypervisor or
    of an http(s) URL (then O(checksum) is required), sent through the libvirt
    stream API (C(virStorageVolUpload)), so it works against a remote O(uri) too.
    A file imported into a directory pool of the libvirtd on the machine the
    module runs on (a O(uri) without a host) is copied into the volume's file
    in the kernel instead (C(copy_file_range)), at close to the speed of C(cp);
    either way the bytes are hashed as they pass and are on the disk before the
    import is recorded. The image's real format, read from its header, must be O(format); a qcow2
    image with a backing file or an external data file is refused, since it
    refers to other files of the host. A download whose SHA-256 is not
    O(checksum), or that fails, leaves no volume behind.
  - B(Import record.) What a volume was imported from (source, SHA-256, size,
    format) is recorded in a small JSON volume beside it, named
    C(<name>.iaas-import.json), in the same pool. It is kept where the volume is
    (so it survives between runs and works against a remote O(uri), where no file
    of the hypervisor can be read otherwise), costs nothing to read, and stays true
    after a VM has written to the volume, which a checksum of the volume's content
    would not. A run whose O(checksum) (or, for a file without O(checksum), whose
    file size, modification time or SHA-256) matches the record changes nothing and
    downloads nothing. A volume without a record (made by other means) is compared
    by the SHA-256 of its content, read once through the stream API; if it is the
    same, the record is written. A volume whose record or content differs from
    O(source) is an error unless O(force=true), which imports it again. A record
    left by an interrupted import makes the next run import again.
  - B(Resize.) A larger O(capacity) grows the volume in place. A volume that a
    running VM uses grows through the VM (C(virDomainBlockResize)), so the guest
    sees the new size at once; any other volume through the pool
    (C(virStorageVolResize)). A smaller O(capacity) than the volume has is an
    error that changes nothing; volumes are never shrunk.
  - B(Delete.) O(state=absent) refuses a volume that a defined VM uses (running
    or not) or that other volumes use as their backing file, unless O(force=true).
    Deleting a volume that does not exist is not an error.
  - Names are checked before anything is touched, as are every other option, the
    pool, the base volume and the source's header.
author:
  - iaas.kvm contributors (!UNKNOWN)
options:
  name:
    description:
      - "Name of the volume, which is also its file name in a directory pool:
        letters, digits and C(_ . + : @ -), no C(/) or C(..)."
    type: str
    required: true
  pool:
    description:
      - The storage pool that holds the volume. It must exist and be active.
    type: str
    default: default
  state:
    description:
      - V(present) creates, imports or grows the volume as needed.
      - V(absent) deletes it (and its import record).
    type: str
    choices: [present, absent]
    default: present
  capacity:
    description:
      - The size the guest sees. An integer counts bytes; a string may carry a
        binary suffix as in qemu-img, V(20G) or V(20GiB) (20 x 1024^3 bytes),
        V(512M), V(512MiB), V(1T); V(K), V(M), V(G), V(T), V(P) and their
        V(KiB) ... V(PiB) forms are all powers of 1024. qcow2 sizes are rounded
        up to a multiple of 512 bytes.
      - Required to create a blank volume. For a linked clone it defaults to the
        base's capacity and may not be smaller; for an import it defaults to the
        image's virtual size and may not be smaller.
      - A larger value than the existing volume's grows it; a smaller one is an error.
    type: raw
  format:
    description:
      - Format of the volume. A linked clone is always V(qcow2). For an import, the
        format the image's header shows (qcow2, else raw) must be this one.
      - The format of an existing volume is never converted; a different one is an error.
    type: str
    choices: [qcow2, raw]
    default: qcow2
  backing_volume:
    description:
      - Make the volume a linked clone (qcow2 overlay) of this volume, the base.
      - The base must exist and be a qcow2 or raw volume.
      - Mutually exclusive with O(source).
    type: str
  backing_pool:
    description:
      - The pool of O(backing_volume); defaults to O(pool).
    type: str
  source:
    description:
      - Import this image as a full copy, from an absolute path of a file on the host
        the module runs on, or an V(http://) or V(https://) URL (which needs O(checksum)).
      - Mutually exclusive with O(backing_volume).
    type: str
  checksum:
    description:
      - The SHA-256 of the O(source), as V(sha256:) followed by 64 hex digits.
      - Required for a URL. The bytes are hashed while they are imported and the
        import is undone when the hash differs.
      - Also decides, without reading the source, whether an imported volume is up to date.
    type: str
  validate_certs:
    description:
      - Whether to verify the TLS certificate of an V(https://) O(source).
    type: bool
    default: true
  timeout:
    description:
      - Seconds to wait for the server of a URL O(source), to connect and for each read.
    type: int
    default: 30
  force:
    description:
      - With O(state=absent), delete the volume even when VMs use it or other
        volumes are built on it (their disks then point at a missing file).
      - With O(source), import again over a volume whose content differs from the
        source. A volume that a running VM uses, or that other volumes are built on,
        is still refused.
    type: bool
    default: false
extends_documentation_fragment:
  - iaas.kvm.libvirt
  - iaas.kvm.libvirt.attributes
notes:
  - A URL is downloaded by the host the module runs on (the inventory host), with
    its proxy settings, and streamed into the volume without a temporary file.
seealso:
  - module: iaas.kvm.kvm_pool
  - module: iaas.kvm.kvm_volume_info
  - module: iaas.kvm.kvm_vm
  - name: libvirt storage volume XML format
    description: The definition libvirt keeps for a volume.
    link: https://libvirt.org/formatstorage.html#storage-volume-xml
"""

EXAMPLES = r"""
- name: Import a cloud image from a mirror, verified by its SHA-256
  iaas.kvm.kvm_volume:
    name: debian-12.qcow2
    pool: default
    source: https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2
    checksum: sha256:2cb4bb6b4ff4ae8c5dc8b1e6b7aa1f8b1f66a5a4f5b3c4a0e7b5a0c3d2e1f0a9
    format: qcow2

- name: Import an image file that is already on the hypervisor
  iaas.kvm.kvm_volume:
    name: ubuntu-22.04.qcow2
    source: /var/cache/images/jammy-server-cloudimg-amd64.img

- name: A 40 GiB linked clone of the base image for VM web1 (no data copied)
  iaas.kvm.kvm_volume:
    name: web1.qcow2
    pool: default
    backing_volume: debian-12.qcow2
    capacity: 40G
  register: web1_disk

- name: Grow the clone later (also while web1 runs)
  iaas.kvm.kvm_volume:
    name: web1.qcow2
    backing_volume: debian-12.qcow2
    capacity: 80GiB

- name: A blank 100 GiB data disk, sparse raw
  iaas.kvm.kvm_volume:
    name: web1-data.raw
    format: raw
    capacity: 100G

- name: Delete a clone that no VM uses any more
  iaas.kvm.kvm_volume:
    name: web1.qcow2
    state: absent
"""

RETURN = r"""
volume:
  description:
    - The volume after the task, read back from libvirt, with the same keys as
      each entry of the C(volumes) list of M(iaas.kvm.kvm_volume_info) but
      C(used_by) (C(name), C(pool), C(path), C(capacity) and C(allocation) in
      bytes, C(format), C(backing_chain) and the C(import) record).
    - In check mode, as the task would leave it (C(allocation) is then null for a
      volume it would create).
    - Empty after O(state=absent).
  returned: always
  type: dict
  sample:
    name: web1.qcow2
    pool: default
    path: /var/lib/libvirt/images/web1.qcow2
    capacity: 42949672960
    allocation: 1966080
    format: qcow2
    backing_chain:
      - {path: /var/lib/libvirt/images/debian-12.qcow2, format: qcow2, volume: debian-12.qcow2, pool: default}
    import: null
actions:
  description: What the module did (or would do in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: ["created linked clone of default/debian-12.qcow2"]
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.iaas.kvm.plugins.module_utils._diff import DifferenceTracker, state_diff
from ansible_collections.iaas.kvm.plugins.module_utils._interrupt import kill_point
from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import (
    URI_ARGUMENT_SPEC,
    LibvirtModuleError,
    ModuleManager,
    check_libraries,
    domains_using_volume,
    error_message,
    exit_module,
    libvirt,
    lookup,
    run_manager,
)
from ansible_collections.iaas.kvm.plugins.module_utils._names import validate_name
from ansible_collections.iaas.kvm.plugins.module_utils._source import Source
from ansible_collections.iaas.kvm.plugins.module_utils._storage import (
    IMPORT_RECORD_SUFFIX,
    delete_import_record,
    download_sha256,
    format_family,
    get_pool,
    get_volume,
    local_volume_file,
    pool_target_path,
    read_import_record,
    running_disk,
    upload_stream,
    volume_details,
    volume_xml,
    volumes_backed_by,
    write_import_record,
)
from ansible_collections.iaas.kvm.plugins.module_utils._units import SizeError, format_size, parse_size

# New volumes are readable by root alone; libvirt hands them to QEMU when a VM starts.
VOLUME_MODE = "0600"


def argument_spec():
    spec = dict(
        name=dict(type="str", required=True),
        pool=dict(type="str", default="default"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        capacity=dict(type="raw"),
        format=dict(type="str", default="qcow2", choices=["qcow2", "raw"]),
        backing_volume=dict(type="str"),
        backing_pool=dict(type="str"),
        source=dict(type="str"),
        checksum=dict(type="str"),
        validate_certs=dict(type="bool", default=True),
        timeout=dict(type="int", default=30),
        force=dict(type="bool", default=False),
    )
    spec.update(URI_ARGUMENT_SPEC)
    return spec


def parse_capacity(value, fmt):
    """``capacity`` in bytes (qcow2 rounded up to 512), None when not given."""
    if value is None:
        return None
    try:
        size = parse_size(value, "B", "capacity")
    except SizeError as exc:
        raise LibvirtModuleError(str(exc)) from exc
    if size <= 0:
        raise LibvirtModuleError("capacity must be larger than 0, got %r." % (value,))
    if fmt == "qcow2":
        size = -(-size // 512) * 512
    return size


class VolumeManager(ModuleManager):
    """Reads the volume, compares it with the task, and converges it."""

    def __init__(self, module, conn):
        super().__init__(module, conn)
        self.tracker = DifferenceTracker()
        self.diff = None
        self.pool = None
        self.predicted = None

    # --- input (read only) ---------------------------------------------------

    def desired(self):
        """The task's options, validated; touches nothing."""
        params = self.params
        validate_name(self.name)
        validate_name(params["pool"], "pool name")
        want = dict(format=params["format"], capacity=parse_capacity(params["capacity"], params["format"]))
        want["backing"] = None
        if params["backing_volume"]:
            validate_name(params["backing_volume"], "backing volume name")
            backing_pool = params["backing_pool"] or params["pool"]
            validate_name(backing_pool, "backing pool name")
            if params["format"] != "qcow2":
                raise LibvirtModuleError("A linked clone (backing_volume) is a qcow2 overlay; format must be qcow2.")
            want["backing"] = (backing_pool, params["backing_volume"])
        want["source"] = None
        if params["source"]:
            if len(self.name) + len(IMPORT_RECORD_SUFFIX) > 255:
                raise LibvirtModuleError(
                    "The volume name %r is too long for an import record; use at most %d characters."
                    % (self.name, 255 - len(IMPORT_RECORD_SUFFIX))
                )
            want["source"] = Source(params["source"], params["checksum"], params["validate_certs"], params["timeout"])
        return want

    def base_volume(self, pool_name, name):
        """The base of a linked clone and its facts; it must be qcow2 or raw."""
        pool = get_pool(self.conn, pool_name)
        base = get_volume(pool, name)
        if base is None:
            raise LibvirtModuleError("The backing volume %s does not exist in storage pool %s." % (name, pool_name))
        facts = volume_details(self.conn, base)
        # An ISO image reads as raw, but a disk built on one is a mistake.
        if facts["format"] not in ("qcow2", "raw"):
            raise LibvirtModuleError(
                "The backing volume %s/%s is a %s volume; a linked clone needs a qcow2 or raw base."
                % (pool_name, name, facts["format"])
            )
        return base, facts

    def check_image(self, source, want):
        """Refuse a source whose header is not ``format`` or that is unfit to import."""
        info = source.info
        if info["problem"]:
            raise LibvirtModuleError("The source %s cannot be imported: %s." % (source.location, info["problem"]))
        if info["format"] != want["format"]:
            raise LibvirtModuleError(
                "The source %s is a %s image (by its header), not %s; set format accordingly or convert it."
                % (source.location, info["format"], want["format"])
            )
        size = info["virtual_size"]
        if want["capacity"] is not None and size is not None and want["capacity"] < size:
            raise LibvirtModuleError(
                "capacity %s is smaller than the virtual size of %s (%s); volumes are never shrunk."
                % (format_size(want["capacity"]), source.location, format_size(size))
            )

    # --- present -------------------------------------------------------------

    def present(self):
        want = self.desired()
        self.pool = pool = get_pool(self.conn, self.params["pool"])
        base = self.base_volume(*want["backing"]) if want["backing"] else None
        vol = get_volume(pool, self.name)
        record = read_import_record(self.conn, pool, self.name) if want["source"] else None
        if vol is None:
            return self.create(want, base)
        return self.update(vol, want, base, record)

    def create(self, want, base):
        pool = self.pool
        if want["source"] is not None:
            return self.import_new(want)
        if base is not None:
            base_vol, base_facts = base
            capacity = want["capacity"] or base_facts["capacity"]
            if capacity < base_facts["capacity"]:
                raise LibvirtModuleError(
                    "capacity %s is smaller than the capacity of the backing volume %s (%s)."
                    % (format_size(capacity), base_vol.name(), format_size(base_facts["capacity"]))
                )
            self.warn_running_base(base_vol)
            xml = volume_xml(self.name, capacity, "qcow2", base_vol.path(), base_facts["format"], mode=VOLUME_MODE)
            action = "created linked clone of %s/%s" % (base_facts["pool"], base_vol.name())
            chain = [
                dict(path=base_vol.path(), format=base_facts["format"], volume=base_vol.name(), pool=base_facts["pool"])
            ]
            chain += base_facts["backing_chain"]
        else:
            if want["capacity"] is None:
                raise LibvirtModuleError(
                    "The volume %s does not exist in storage pool %s; capacity is needed to create it."
                    % (self.name, pool.name())
                )
            capacity = want["capacity"]
            xml = volume_xml(self.name, capacity, want["format"], mode=VOLUME_MODE)
            action = "created %s %s volume" % (format_size(capacity), want["format"])
            chain = []
        after = dict(format=want["format"], capacity=capacity, backing=chain[0]["path"] if chain else None)
        self.diff = state_diff(None, after)
        self.do(action, "create volume %s in pool %s" % (self.name, pool.name()), pool.createXML, xml, 0)
        kill_point("kvm_volume:created")
        self.predicted = dict(capacity=capacity, format=want["format"], backing_chain=chain, allocation=None)
        return self.result()

    def warn_running_base(self, base_vol):
        pool = base_vol.storagePoolLookupByVolume().name()
        users = domains_using_volume(self.conn, base_vol.path(), pool, base_vol.name(), running_only=True)
        if users:
            self.warnings.append(
                "The base volume %s is the disk of running VM(s) %s; a clone of a disk that is being written to "
                "sees it change underneath." % (base_vol.name(), ", ".join(users))
            )

    def update(self, vol, want, base, record):
        facts = volume_details(self.conn, vol)
        have_format = format_family(facts["format"])
        if have_format != want["format"]:
            raise LibvirtModuleError(
                "The volume %s is a %s volume, not %s; formats are not converted (remove it first)."
                % (self.name, facts["format"], want["format"])
            )
        have_backing = facts["backing_chain"][0]["path"] if facts["backing_chain"] else None
        if base is not None and have_backing != base[0].path():
            raise LibvirtModuleError(
                "The volume %s already exists with backing file %s, not %s; it is not replaced (remove it first)."
                % (self.name, have_backing or "none", base[0].path())
            )
        self.tracker.add("format", have_format, want["format"])
        if base is not None:
            self.tracker.add("backing", have_backing, base[0].path())

        source = want["source"]
        verdict = None
        if source is not None:
            verdict = self.compare_source(vol, record, source)
            self.tracker.add(
                "import", (record or {}).get("sha256"), source.expected or (record or {}).get("sha256"), compare=False
            )
            if verdict == "differs" and not self.params["force"]:
                self.refuse(
                    "The volume %s holds other content than %s; set force: true to import it again."
                    % (self.name, source.location),
                    actions=["deleted the previous content of %s" % self.name, "imported %s" % source.location],
                )
            if verdict in ("differs", "partial"):
                self.refuse_replace(vol)
                return self.import_new(want, replace=vol)
        grow = False
        if want["capacity"] is not None:
            self.tracker.add("capacity", facts["capacity"], max(facts["capacity"], want["capacity"]))
            if want["capacity"] < facts["capacity"]:
                self.refuse(
                    "The volume %s has a capacity of %s; capacity %s would shrink it, which is never done."
                    % (self.name, format_size(facts["capacity"]), format_size(want["capacity"]))
                )
            grow = want["capacity"] > facts["capacity"]
        if verdict == "adopt":
            self.adopt(source, facts)
        if grow:
            self.grow(vol, want["capacity"])
            self.predicted = dict(capacity=want["capacity"])
        return self.result()

    def compare_source(self, vol, record, source):
        """``same``, ``adopt`` (same content, no record yet), ``differs`` or ``partial``."""
        if record is not None and record.get("state") != "complete":
            return "partial"
        if record is not None:
            if source.expected is not None:
                return "same" if record.get("sha256") == source.expected else "differs"
            st = source.stat()
            quick = (record.get("source"), record.get("size"), record.get("source_mtime_ns"))
            if quick == (source.location, st.st_size, st.st_mtime_ns):
                return "same"
            return "same" if source.file_sha256() == record.get("sha256") else "differs"
        wanted = source.expected or source.file_sha256()
        return "adopt" if download_sha256(self.conn, vol) == wanted else "differs"

    def refuse_replace(self, vol):
        dom, _target = running_disk(self.conn, vol.path(), self.pool.name(), self.name)
        if dom is not None:
            self.refuse(
                "The volume %s is the disk of running VM %s; it cannot be imported again." % (self.name, dom.name())
            )
        overlays = volumes_backed_by(self.conn, vol.path())
        if overlays:
            self.refuse(
                "The volume %s is the backing file of %s; importing it again would corrupt them."
                % (self.name, ", ".join(overlays))
            )

    def adopt(self, source, facts):
        """An existing volume with the source's content: write its import record."""
        if not self.check:
            sha = source.expected or source.file_sha256()
            self.write_record(source, sha, facts["format"], "complete", size=None)
        self.act("recorded the import of %s (the volume already holds it)" % source.location)

    def write_record(self, source, sha, fmt, state, size):
        record = dict(
            version=1,
            state=state,
            source=source.location,
            sha256=sha,
            size=size,
            format=fmt,
            imported_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            source_mtime_ns=None,
        )
        if not source.is_url:
            st = source.stat()
            record.update(source_mtime_ns=st.st_mtime_ns, size=st.st_size if size is None else size)
        write_import_record(self.conn, self.pool, self.name, record)

    def import_new(self, want, replace=None):
        """Import the source as volume ``name`` (replacing ``replace``); undone on any failure."""
        source = want["source"]
        source.open()
        try:
            self.check_image(source, want)
            size = source.info["virtual_size"]
            capacity = max(want["capacity"] or 0, size or 0) or None
            grown = want["capacity"] is not None and size is not None and want["capacity"] > size
            self.diff = state_diff(
                None if replace is None else dict(name=self.name),
                dict(format=want["format"], capacity=capacity, source=source.location),
            )
            self.predicted = dict(capacity=capacity, format=want["format"], backing_chain=[], allocation=None)
            if replace is not None:
                # A failed import after this leaves nothing behind; only the replaced volume is gone.
                self.do(
                    "deleted the previous content of %s" % self.name, "delete volume %s" % self.name, replace.delete, 0
                )
            if not self.check:
                self.upload(source, want)
            self.act("imported %s" % source.location)
            if grown:
                self.act("grown to %s" % format_size(want["capacity"]))
        finally:
            source.close()
        if not self.check:
            self.predicted = None
        return self.result()

    def upload(self, source, want):
        """Stream the source into a new volume, verify it and record it; undone on any failure."""
        pool = self.pool
        vol = None
        try:
            # A record in state "importing" marks the volume as incomplete until the end.
            self.write_record(source, None, want["format"], "importing", size=source.length)
            xml = volume_xml(self.name, source.length or 0, "raw", mode=VOLUME_MODE)
            vol = self.call("create volume %s in pool %s" % (self.name, pool.name()), pool.createXML, xml, 0)

            self.transfer(source, vol)
            sha = source.sha256()
            if source.expected is not None and sha != source.expected:
                raise LibvirtModuleError(
                    "The SHA-256 of %s is %s, not %s as checksum says; nothing was imported."
                    % (source.location, sha, source.expected)
                )
            self.call("refresh pool %s" % pool.name(), pool.refresh, 0)
            vol = get_volume(pool, self.name)
            facts = volume_details(self.conn, vol)
            if format_family(facts["format"]) != want["format"]:
                raise LibvirtModuleError(
                    "libvirt reads the imported %s as %s, not %s; nothing was imported."
                    % (source.location, facts["format"], want["format"])
                )
            if want["capacity"] is not None and want["capacity"] < facts["capacity"]:
                raise LibvirtModuleError(
                    "capacity %s is smaller than the virtual size of %s (%s); nothing was imported."
                    % (format_size(want["capacity"]), source.location, format_size(facts["capacity"]))
                )
            if want["capacity"] is not None and want["capacity"] > facts["capacity"]:
                if source.info["virtual_size"] is None:
                    self.act("grown to %s" % format_size(want["capacity"]))
                self.call("grow volume %s" % self.name, vol.resize, want["capacity"], 0)
            kill_point("kvm_volume:before-record")
            # Written last: until the record says complete, the next run imports again.
            self.write_record(source, sha, want["format"], "complete", size=source.count)
        except BaseException:
            if vol is not None:
                try:
                    vol.delete(0)
                except libvirt.libvirtError as exc:
                    self.warnings.append(
                        "The partial volume %s could not be removed: %s" % (self.name, error_message(exc))
                    )
            try:
                delete_import_record(pool, self.name)
            except libvirt.libvirtError as exc:
                self.warnings.append(
                    "The import record of %s could not be removed: %s" % (self.name, error_message(exc))
                )
            raise

    def transfer(self, source, vol):
        """The source's bytes into the new volume ``vol``: copied in the kernel
        when it is a file and ``vol`` a file of this host (local_target), else
        through the libvirt stream API. Both hash the source on the way and
        leave the data on the disk (libvirt's stream writer syncs the file)."""

        def progress():
            kill_point("kvm_volume:uploading")  # after the first chunk is written

        path = self.local_target(source, vol)
        if path is not None:
            source.copy_into(path, progress)
            return

        def read(size):
            chunk = source.read(size)
            progress()
            return chunk

        self.call(
            "upload %s into volume %s" % (source.location, self.name),
            upload_stream,
            self.conn,
            vol,
            read,
            source.length,
        )

    def local_target(self, source, vol):
        """The volume's file when this process may write it directly: a file
        source and a directory-pool volume of the libvirtd on this machine."""
        if source.is_url:
            return None
        return local_volume_file(self.conn, self.pool, vol)

    def grow(self, vol, capacity):
        """Grow through the running VM that uses the volume, or through the pool."""
        dom, target = running_disk(self.conn, vol.path(), self.pool.name(), self.name)
        if dom is not None:
            self.do(
                "grown to %s through running VM %s (disk %s)" % (format_size(capacity), dom.name(), target),
                "grow disk %s of VM %s" % (target, dom.name()),
                dom.blockResize,
                target,
                capacity,
                libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES,
            )
        else:
            self.do("grown to %s" % format_size(capacity), "grow volume %s" % self.name, vol.resize, capacity, 0)

    # --- absent --------------------------------------------------------------

    def absent(self):
        validate_name(self.name)
        validate_name(self.params["pool"], "pool name")
        pool = lookup(self.conn.storagePoolLookupByName, self.params["pool"])
        if pool is None:
            return self.result()
        self.pool = pool = get_pool(self.conn, self.params["pool"])
        vol = get_volume(pool, self.name)
        record = get_volume(pool, self.name + IMPORT_RECORD_SUFFIX)
        if vol is None:
            if record is not None:
                self.do(
                    "deleted the import record of the missing volume",
                    "delete import record of %s" % self.name,
                    record.delete,
                    0,
                )
            return self.result()
        path = vol.path()
        users = domains_using_volume(self.conn, path, pool.name(), self.name)
        overlays = volumes_backed_by(self.conn, path)
        if (users or overlays) and not self.params["force"]:
            reasons = []
            if users:
                reasons.append("VM(s) %s use it" % ", ".join(users))
            if overlays:
                reasons.append("volume(s) %s are built on it" % ", ".join(overlays))
            self.refuse(
                "The volume %s is not deleted because %s; set force: true to delete it anyway."
                % (self.name, " and ".join(reasons)),
                actions=["deleted"],
            )
        before = volume_details(self.conn, vol)
        self.diff = state_diff(before, None)
        self.do("deleted", "delete volume %s" % self.name, vol.delete, 0)
        if record is not None and not self.check:
            self.call("delete import record of %s" % self.name, record.delete, 0)
        return self.result()

    # --- output --------------------------------------------------------------

    def facts(self):
        """The volume as it is now, or as check mode predicts it."""
        pool = self.pool
        vol = get_volume(pool, self.name)
        if vol is not None:
            facts = volume_details(self.conn, vol)
            facts["import"] = read_import_record(self.conn, pool, self.name)
        else:
            path = "%s/%s" % (pool_target_path(pool).rstrip("/"), self.name)
            facts = dict(name=self.name, pool=pool.name(), path=path, allocation=None, backing_chain=[])
            facts["import"] = None
        if self.check and self.predicted:
            facts.update(self.predicted)
        return facts

    def result(self):
        facts = self.facts() if self.params["state"] == "present" else {}
        result = dict(changed=self.changed, volume=facts, actions=self.actions)
        if self.module._diff:
            result["diff"] = self.diff if self.diff is not None else self.tracker.diff()
        return result

    def run(self):
        if self.params["state"] == "absent":
            return self.absent()
        return self.present()


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[("backing_volume", "source")],
        required_by=dict(backing_pool="backing_volume", checksum="source"),
        supports_check_mode=True,
    )
    check_libraries(module)
    exit_module(module, *run_manager(module, VolumeManager))


if __name__ == "__main__":
    main()
