#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: cloudinit_seed
short_description: cloud-init NoCloud seed images, built in pure Python
version_added: 0.1.0
description:
  - Builds a cloud-init NoCloud seed, an ISO 9660 image with the volume label
    C(cidata) and Joliet and Rock Ridge names, holding C(user-data),
    C(meta-data), and when given C(network-config) and C(vendor-data). A VM
    that has it as a cdrom (O(iaas.kvm.kvm_vm#module:cloudinit_seed)) gets its
    host name, users, SSH keys, network and first-boot commands from it.
  - The image is made with pycdlib on the host that runs the module; no
    C(genisoimage), C(xorriso) or C(cloud-localds) is needed.
  - Writes the seed to O(path) on the host that runs the module, or uploads it
    as volume O(name) into storage pool O(pool) through the libvirt stream API
    (which works with a remote O(uri) too).
  - Idempotent by content. The documents inside an existing seed are read back
    and compared with the task's. A document rendered from a mapping is
    compared as parsed YAML (key order and formatting aside), a document given
    as text is compared as text. The seed is rewritten only when a document
    differs, so a re-run reports no change, in check mode too.
  - The same documents always give the same bytes (every timestamp in the image
    is 2000-01-01T00:00:00Z), so RV(sha256) is stable.
  - cloud-init reads a seed when an instance first boots, and again only when
    the C(instance-id) in C(meta-data) changes. Changing a seed of a VM that
    has booted changes nothing in it unless the instance-id changes too.
author:
  - iaas.kvm contributors (!UNKNOWN)
options:
  path:
    description:
      - Absolute path of the seed image on the host that runs the module.
      - Its directory must exist. The image is written to a temporary file in
        that directory and renamed over O(path), so a reader never sees half an
        image. Its mode is C(0644) (QEMU can read it, only the owner can write
        it); an existing file with another mode gets C(0644). A file the
        module writes belongs to the user it runs as (root on a hypervisor);
        libvirt may hand it to the QEMU user while a VM uses it.
      - O(uri) is not used with O(path).
      - Mutually exclusive with O(pool) and O(name).
    type: path
  pool:
    description:
      - Storage pool that holds the seed as volume O(name). The pool must
        exist and be active.
      - The volume is a raw volume of exactly the image's size, with mode
        C(0644).
    type: str
  name:
    description:
      - Name of the seed volume in O(pool), for example C(web1-seed.iso).
      - Required with O(pool).
    type: str
  user_data:
    description:
      - The C(user-data) document.
      - A mapping is rendered as a C(#cloud-config) YAML document, keys in the
        order given.
      - A text is written as given. It must start with C(#cloud-config) (and
        then be a YAML mapping), C(#!) (a script), another header cloud-init
        knows (C(#include), C(#cloud-boothook), C(#part-handler),
        C(#cloud-config-archive), C(## template) for Jinja), or be a MIME
        multipart message. A text without a header is refused, because
        cloud-init would ignore it.
      - The conveniences O(hostname), O(ssh_authorized_keys), O(users),
        O(password), O(packages) and O(runcmd) are merged into a mapping or a
        C(#cloud-config) text (a text is then rendered again, without its
        comments). With any other text they become a C(text/cloud-config) part
        of a MIME multipart user-data, beside the text. They cannot be merged
        into a MIME multipart text.
      - A key set both by a convenience and in O(user_data) with another value
        is an error (O(password) always is).
      - Without O(user_data) and conveniences the document is an empty
        C(#cloud-config).
    type: raw
  meta_data:
    description:
      - The C(meta-data) document, as a mapping.
      - C(instance-id) defaults to O(hostname), else C(local-hostname), else
        the name of the seed (O(name) or the file name of O(path)) without
        C(.iso) and a C(-seed) suffix. It is never random, so the same task
        gives the same instance-id.
      - C(local-hostname) defaults to O(hostname); both set to different
        values is an error.
    type: dict
  network_config:
    description:
      - The C(network-config) document (the network configuration cloud-init
        applies on first boot), as a mapping with C(version) 2 (netplan style,
        with C(ethernets), C(bonds), C(bridges), C(vlans)) or 1.
      - A mapping with one C(network) key holding the configuration is taken
        as that configuration.
      - Without it cloud-init configures DHCP on the first interface.
    type: dict
  vendor_data:
    description:
      - The C(vendor-data) document, a mapping (rendered as C(#cloud-config))
        or a text, which follows the rules of O(user_data).
    type: raw
  hostname:
    description:
      - The guest's host name (a short name or a fully qualified one); set as
        C(hostname) in user-data and C(local-hostname) in meta-data.
    type: str
  ssh_authorized_keys:
    description:
      - SSH public keys for the image's default user (C(ssh_authorized_keys) in
        user-data). An entry with several lines (an C(authorized_keys) file) is
        split into one key a line; empty lines and comments are dropped.
    type: list
    elements: str
  users:
    description:
      - The C(users) list of user-data, as cloud-init takes it (mappings with
        C(name), C(groups), C(sudo), C(shell), C(ssh_authorized_keys), ...).
      - Include the entry C(default) to keep the image's default user;
        cloud-init creates only the users listed.
    type: list
    elements: raw
  password:
    description:
      - Password of the image's default user (C(password) in user-data).
      - A plain-text password is stored in the seed only as a SHA-512 crypt
        hash (C($6$)), computed in Python; the plain text never appears in the
        image, the output or the diff.
      - A value that already is a crypt hash of a strong scheme that cloud-init's
        C(password) key recognises as a hash (SHA-512 C($6$), SHA-256 C($5$),
        bcrypt C($2a$) or C($2y$)) is stored as given.
      - Refused with a clear message, writing nothing - a hash of a weak scheme
        (DES, also any plain password of exactly 13 characters of C(./0-9A-Za-z),
        which reads as one; BSDi C(_), MD5 C($1$), SHA-1 C($sha1$)), and a
        yescrypt (C($y$)), scrypt (C($7$)) or C($2b$) bcrypt hash, which
        cloud-init's C(password) key takes for plain text (it would become the
        password itself). Give those as C(hashed_passwd) of a user in O(users),
        which the guest's C(useradd) reads with any scheme its libcrypt knows.
      - When the seed already holds a hash of this password, that hash (and
        its salt) is kept, so the seed does not change.
      - "cloud-init makes the user choose a new password at the first login
        unless O(user_data) sets C(chpasswd: {expire: false}). It does not
        enable SSH password logins (C(ssh_pwauth))."
    type: str
  packages:
    description:
      - Packages to install on first boot (C(packages) in user-data).
    type: list
    elements: str
  runcmd:
    description:
      - Commands to run at the end of the first boot (C(runcmd) in user-data),
        each a string (run by C(sh)) or a list (an argument vector).
    type: list
    elements: raw
  force:
    description:
      - Replace an existing file or volume that is not a NoCloud seed (not an
        ISO 9660 image labelled C(cidata) with Rock Ridge or Joliet names, or
        larger than 16 MiB). Without it such a destination is an error, so a
        mistyped O(path) or O(name) does not overwrite a disk.
    type: bool
    default: false
extends_documentation_fragment:
  - iaas.kvm.libvirt
  - iaas.kvm.libvirt.attributes
requirements:
  - pycdlib (C(python3-pycdlib)) on the host that runs the module
  - PyYAML (C(python3-yaml)) on the host that runs the module
notes:
  - libvirt-python and lxml are needed only with O(pool).
  - Secrets in O(user_data) and O(vendor_data), mappings or texts - the values of
    the keys C(password), C(passwd), C(hashed_passwd) and C(plain_text_passwd)
    at any depth, the passwords of C(chpasswd.list) entries and crypt hashes -
    are masked in the returned documents, in the diff (which marks a masked value
    that changed) and in the task's arguments that Ansible shows back. The seed
    itself holds them as given, since cloud-init needs them; only O(password) is
    hashed.
seealso:
  - module: iaas.kvm.kvm_vm
  - module: iaas.kvm.kvm_volume
  - name: cloud-init NoCloud datasource
    description: How cloud-init finds and reads a seed.
    link: https://cloudinit.readthedocs.io/en/latest/reference/datasources/nocloud.html
  - name: cloud-init network configuration version 2
    description: The format of O(network_config).
    link: https://cloudinit.readthedocs.io/en/latest/reference/network-config-format-v2.html
"""

EXAMPLES = r"""
- name: A seed volume with a host name and an SSH key for the default user
  iaas.kvm.cloudinit_seed:
    pool: default
    name: web1-seed.iso
    hostname: web1
    ssh_authorized_keys:
      - "{{ lookup('ansible.builtin.file', '~/.ssh/id_ed25519.pub') }}"

- name: A static address, a file and a package, written to a path on the hypervisor
  iaas.kvm.cloudinit_seed:
    path: /var/lib/libvirt/images/db1-seed.iso
    hostname: db1
    ssh_authorized_keys: "{{ admin_keys }}"
    packages: [postgresql]
    user_data:
      write_files:
        - path: /etc/motd
          content: "db1, managed by Ansible\n"
    network_config:
      version: 2
      ethernets:
        eth0:
          match:
            macaddress: "52:54:00:12:34:56"
          set-name: eth0
          addresses: [192.168.122.50/24]
          routes:
            - to: default
              via: 192.168.122.1
          nameservers:
            addresses: [192.168.122.1]

- name: A console password for the default user (stored only as a SHA-512 hash)
  iaas.kvm.cloudinit_seed:
    pool: default
    name: gpu1-seed.iso
    hostname: gpu1
    password: "{{ vault_console_password }}"
    user_data:
      chpasswd:
        expire: false

- name: Users of its own and a first-boot script
  iaas.kvm.cloudinit_seed:
    pool: default
    name: ml1-seed.iso
    hostname: ml1
    users:
      - default
      - name: ops
        groups: [sudo]
        shell: /bin/bash
        sudo: "ALL=(ALL) NOPASSWD:ALL"
        ssh_authorized_keys: "{{ ops_keys }}"
    runcmd:
      - [systemctl, enable, --now, ssh]
      - echo done > /var/tmp/first-boot

- name: A user-data text as it is, with a fixed instance-id
  iaas.kvm.cloudinit_seed:
    pool: default
    name: legacy-seed.iso
    user_data: "{{ lookup('ansible.builtin.file', 'legacy-user-data.yml') }}"
    meta_data:
      instance-id: legacy-2024-06
      local-hostname: legacy

- name: The seed attached to a VM
  iaas.kvm.kvm_vm:
    name: web1
    state: running
    memory: 2GiB
    disks:
      - volume: web1.qcow2
        pool: default
    cloudinit_seed:
      volume: web1-seed.iso
      pool: default
    interfaces:
      - network: default
"""

RETURN = r"""
path:
  description:
    - Path of the seed image on the hypervisor (with O(pool), the volume's path).
    - Null in check mode for a volume that does not exist yet.
  returned: always
  type: str
  sample: /var/lib/libvirt/images/web1-seed.iso
volume:
  description: The seed volume, with O(pool); null with O(path).
  returned: always
  type: dict
  contains:
    name:
      description: Name of the volume.
      type: str
      sample: web1-seed.iso
    pool:
      description: Name of its pool.
      type: str
      sample: default
  sample:
    name: web1-seed.iso
    pool: default
sha256:
  description:
    - SHA-256 of the seed image after the task (in check mode, of the image it
      would write, or of the unchanged image).
    - A new plain-text O(password) is hashed with a random salt on each run that
      writes the seed, so in that case the value check mode predicts differs from
      the one of the real run; the documents inside are the same.
  returned: always
  type: str
  sample: 6f1ed002ab5595859014ebf0951522d9a6c0c7f4f4d2b7e1c6c58b4a4f4d9c3e
size:
  description: Size of the seed image in bytes.
  returned: always
  type: int
  sample: 374784
instance_id:
  description: The C(instance-id) of the seed's meta-data.
  returned: always
  type: str
  sample: web1
documents:
  description:
    - The documents inside the seed after the task, by file name (C(user-data),
      C(meta-data), and when present C(network-config) and C(vendor-data)),
      with secret values masked.
  returned: always
  type: dict
  sample:
    user-data: "#cloud-config\nhostname: web1\nssh_authorized_keys:\n- ssh-ed25519 AAAAC3Nza... admin\npassword: ********\n"
    meta-data: "instance-id: web1\nlocal-hostname: web1\n"
actions:
  description: What the module did (or would do in check mode).
  returned: always
  type: list
  elements: str
  sample: [created]
"""

import os
import stat

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.iaas.kvm.plugins.module_utils import _seed
from ansible_collections.iaas.kvm.plugins.module_utils._diff import DifferenceTracker
from ansible_collections.iaas.kvm.plugins.module_utils._files import write_atomic
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
    run_manager,
)
from ansible_collections.iaas.kvm.plugins.module_utils._names import validate_name
from ansible_collections.iaas.kvm.plugins.module_utils._storage import (
    WRITING_SUFFIX,
    download_bytes,
    get_pool,
    get_volume,
    upload_bytes,
    volume_xml,
)

FILE_MODE = 0o644


def argument_spec():
    spec = dict(
        path=dict(type="path"),
        pool=dict(type="str"),
        name=dict(type="str"),
        user_data=dict(type="raw"),
        meta_data=dict(type="dict"),
        network_config=dict(type="dict"),
        vendor_data=dict(type="raw"),
        hostname=dict(type="str"),
        ssh_authorized_keys=dict(type="list", elements="str", no_log=False),
        users=dict(type="list", elements="raw"),
        password=dict(type="str", no_log=True),
        packages=dict(type="list", elements="str"),
        runcmd=dict(type="list", elements="raw"),
        force=dict(type="bool", default=False),
    )
    spec.update(URI_ARGUMENT_SPEC)
    return spec


class FileDestination:
    """The seed as a file on the host that runs the module."""

    def __init__(self, path):
        if not path.startswith("/"):
            raise LibvirtModuleError("The seed path %r must be absolute." % path)
        self.path = path
        self.name = path
        self.volume = None

    def describe(self):
        return "The file %s" % self.path

    def _target(self):
        # A link is followed: the file it points to is replaced, not the link.
        return os.path.realpath(self.path)

    def read(self):
        directory = os.path.dirname(self._target())
        if not os.path.isdir(directory):
            raise LibvirtModuleError("The directory %s for the seed does not exist." % os.path.dirname(self.path))
        try:
            info = os.stat(self._target())
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise LibvirtModuleError("Cannot read %s: %s." % (self.path, exc.strerror)) from exc
        if not stat.S_ISREG(info.st_mode):
            raise LibvirtModuleError("%s exists and is not a regular file." % self.path)
        if info.st_size > _seed.READ_LIMIT:
            return _TooLarge(info.st_size)
        try:
            with open(self._target(), "rb") as handle:
                return handle.read()
        except OSError as exc:
            raise LibvirtModuleError("Cannot read %s: %s." % (self.path, exc.strerror)) from exc

    def current_mode(self):
        try:
            return stat.S_IMODE(os.stat(self._target()).st_mode)
        except FileNotFoundError:
            return None

    def write(self, data):
        try:
            write_atomic(self._target(), data, FILE_MODE)
        except OSError as exc:
            raise LibvirtModuleError("Cannot write the seed to %s: %s." % (self.path, exc.strerror)) from exc

    def set_mode(self):
        try:
            os.chmod(self._target(), FILE_MODE)
        except OSError as exc:
            raise LibvirtModuleError("Cannot set the mode of %s: %s." % (self.path, exc.strerror)) from exc

    def result_path(self):
        return self.path


class VolumeDestination:
    """The seed as a volume of a storage pool, read and written through the stream API."""

    def __init__(self, conn, pool_name, name):
        self.conn = conn
        self.pool_name = pool_name
        self.name = validate_name(name)
        self.volume = dict(name=name, pool=pool_name)
        self.pool = None
        self.vol = None

    def describe(self):
        return "The volume %s of pool %s" % (self.name, self.pool_name)

    def read(self):
        self.pool = get_pool(self.conn, self.pool_name)
        self.vol = get_volume(self.pool, self.name)
        if self.vol is None:
            return None
        if get_volume(self.pool, self.name + WRITING_SUFFIX) is not None:
            return INTERRUPTED
        size = self.vol.info()[1]
        if size > _seed.READ_LIMIT:
            return _TooLarge(size)
        return download_bytes(self.conn, self.vol, _seed.READ_LIMIT)

    def current_mode(self):
        return None  # libvirt sets the mode of the volumes it creates

    def write(self, data):
        """Upload ``data``; a marker volume beside the seed says, until the upload
        is complete, that the seed is half-written (the next run rewrites it)."""
        marker = self.name + WRITING_SUFFIX
        try:
            if get_volume(self.pool, marker) is None:
                self.pool.createXML(volume_xml(marker, 0, fmt="raw"), 0)
            kill_point("cloudinit_seed:marked")
            self.vol = upload_bytes(self.conn, self.pool, self.name, data, progress=_uploading)
            get_volume(self.pool, marker).delete(0)
        except libvirt.libvirtError as exc:
            raise LibvirtModuleError(
                "Cannot upload the seed to volume %s of pool %s: %s" % (self.name, self.pool_name, error_message(exc))
            ) from exc

    def running_users(self):
        if self.vol is None:
            return []
        return domains_using_volume(self.conn, self.vol.path(), self.pool_name, self.name, running_only=True)

    def result_path(self):
        return self.vol.path() if self.vol is not None else None


def _uploading():
    kill_point("cloudinit_seed:uploading")


# Stands for the content of a seed volume whose last write was interrupted.
INTERRUPTED = object()


class _TooLarge:
    """Stands for the content of a destination too large to be a seed."""

    def __init__(self, size):
        self.size = size


class SeedManager(ModuleManager):
    """Reads the seed at the destination, compares its documents with the
    task's, and writes a new image when they differ."""

    def __init__(self, module, conn):
        super().__init__(module, conn)
        self.tracker = DifferenceTracker()
        self.interrupted = False

    def destination(self):
        if self.params["pool"]:
            return VolumeDestination(self.conn, self.params["pool"], self.params["name"])
        return FileDestination(self.params["path"])

    def read_existing(self, dest):
        """``(bytes, documents)`` at the destination: ``(None, None)`` when there
        is nothing, ``(bytes, None)`` for something that is not a seed (refused
        without force)."""
        data = dest.read()
        if data is None:
            return None, None
        if data is INTERRUPTED:
            self.interrupted = True
            return b"", None
        if isinstance(data, _TooLarge):
            problem = "it is %d bytes, larger than a seed" % data.size
        else:
            try:
                return data, _seed.read_seed(data)
            except _seed.NotASeed as exc:
                problem = str(exc)
        if not self.params["force"]:
            raise LibvirtModuleError(
                "%s exists but is not a NoCloud seed (%s); set force: true to replace it." % (dest.describe(), problem)
            )
        return (data if not isinstance(data, _TooLarge) else b""), None

    def run(self):
        destination_name = self.params["name"] or self.params["path"]
        if self.params["pool"]:
            validate_name(self.params["name"])
        spec = _seed.SeedSpec(self.params, destination_name)
        dest = self.destination()
        before_bytes, before = self.read_existing(dest)

        password_hash = spec.password_hash((before or {}).get("user-data"))
        documents = spec.documents(password_hash)
        rewrite = before is None or not _seed.unchanged(documents, before)
        if rewrite:
            after = {name: doc.text for name, doc in documents.items()}
            image = _seed.build_iso(after)
            if self.interrupted:
                action = "rewritten (an earlier write was interrupted)"
            else:
                action = "created" if before_bytes is None else "replaced" if before is None else "updated"
        else:
            after = {name: text for name, text in before.items() if text is not None}
            image = before_bytes

        self.record_diff(before, after)
        mode = dest.current_mode()
        if rewrite:
            if not self.check:
                dest.write(image)
            self.act(action)
        elif mode is not None and mode != FILE_MODE:
            self.tracker.add("mode", "%04o\n" % mode, "%04o\n" % FILE_MODE)
            if not self.check:
                dest.set_mode()
            self.act("mode %04o" % FILE_MODE)
        if rewrite and isinstance(dest, VolumeDestination):
            users = dest.running_users()
            if users:
                self.warnings.append(
                    "Running VMs use the seed volume %s (%s); cloud-init reads a changed seed at the next boot "
                    "only when the instance-id changed too." % (dest.name, ", ".join(users))
                )

        result = dict(
            changed=self.changed,
            path=dest.result_path(),
            volume=dest.volume,
            sha256=_seed.sha256(image),
            size=len(image),
            instance_id=spec.instance_id,
            documents=_seed.masked_documents(after),
            actions=self.actions,
        )
        if self.module._diff:
            result["diff"] = self.tracker.text_diffs()
        return result

    def record_diff(self, before, after):
        """Each document's text before and after, secrets masked (a changed secret marked)."""
        before = before or {}
        for name in _seed.DOCUMENTS:
            old, new = before.get(name), after.get(name)
            if old is None and new is None:
                continue
            known = _seed.secret_values(old) if before else None
            self.tracker.add(name, _seed.mask_text(old), _seed.mask_text(new, known=known))


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[("path", "pool"), ("path", "name")],
        required_one_of=[("path", "pool")],
        required_together=[("pool", "name")],
        supports_check_mode=True,
    )
    _seed.check_libraries(module)
    for option in ("user_data", "vendor_data"):
        module.no_log_values.update(_seed.secret_strings(module.params[option]))
    if module.params["pool"]:
        check_libraries(module)
        exit_module(module, *run_manager(module, SeedManager))
    manager = SeedManager(module, None)
    try:
        result, error = manager.run(), None
    except LibvirtModuleError as exc:
        result, error = None, str(exc)
    exit_module(module, manager, result, error)


if __name__ == "__main__":
    main()
