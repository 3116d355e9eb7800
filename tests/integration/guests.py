# -*- coding: utf-8 -*-
"""Boot real QEMU guests in the lab with plain libvirt-python.

Tests of modules other than kvm_vm use this to have a guest on a network or a
disk without depending on kvm_vm. The guest is an overlay of the base volume
plus a NoCloud seed (built here with pycdlib) carrying an SSH key.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

import libvirt
import pycdlib
import yaml

from ansible_collections.iaas.kvm.plugins.module_utils._storage import upload_bytes, volume_xml
from tests.integration.conftest import (
    DOMAIN_TYPE,
    GUEST_USER,
    SSHKey,
    default_pool_path,
    guest_ssh,
    wait_for_lease,
    wait_for_ssh,
)


def make_seed_iso(user_data: str, meta_data: str, network_config: str | None = None) -> bytes:
    """A NoCloud seed (label cidata) as bytes, for tests that must not depend on cloudinit_seed."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="cidata")
    files = [("user-data", user_data), ("meta-data", meta_data)]
    if network_config is not None:
        files.append(("network-config", network_config))
    for name, text in files:
        data = text.encode()
        iso.add_fp(
            io.BytesIO(data),
            len(data),
            "/" + name.upper().replace("-", "_") + ".;1",
            rr_name=name,
            joliet_path="/" + name,
        )
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


@dataclass
class Guest:
    conn: libvirt.virConnect
    name: str
    key: SSHKey
    volumes: list = field(default_factory=list)
    ip: str | None = None
    console_log: str | None = None

    @property
    def domain(self):
        return self.conn.lookupByName(self.name)

    def wait_for_ip(self, timeout=300):
        self.ip = wait_for_lease(self.conn, self.name, timeout)
        return self.ip

    def wait_for_ssh(self, timeout=300):
        if self.ip is None:
            self.wait_for_ip(timeout)
        return wait_for_ssh(self.key, self.ip, GUEST_USER, timeout)

    def ssh(self, command, check=True, timeout=120):
        return guest_ssh(self.key, self.ip, command, check=check, timeout=timeout)

    def destroy(self):
        """Remove the domain, its overlay and its seed (only what this guest made)."""
        try:
            dom = self.conn.lookupByName(self.name)
        except libvirt.libvirtError:
            dom = None
        if dom is not None:
            if dom.isActive():
                dom.destroy()
            dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
        for vol in self.volumes:
            with contextlib.suppress(libvirt.libvirtError):
                vol.delete(0)
        if self.console_log and os.path.exists(self.console_log):
            os.unlink(self.console_log)


def overlay(pool, name, base_volume, capacity=4 * 1024**3):
    """A qcow2 linked clone of ``base_volume`` named ``name``."""
    xml = volume_xml(name, capacity, fmt="qcow2", backing_path=base_volume.path(), backing_format="qcow2")
    return pool.createXML(xml, 0)


def make_seed_volume(conn, pool, name, hostname, public_key, user_data=None, network_config=None):
    """A NoCloud seed volume ``name`` that lets ``public_key`` in as the image's user."""
    cloud_config = {"hostname": hostname, "ssh_authorized_keys": [public_key]}
    cloud_config.update(user_data or {})
    seed = make_seed_iso(
        "#cloud-config\n" + yaml.safe_dump(cloud_config, sort_keys=False),
        "instance-id: %s-%d\nlocal-hostname: %s\n" % (hostname, int(time.time()), hostname),
        yaml.safe_dump(network_config) if network_config else None,
    )
    return upload_bytes(conn, pool, name, seed)


def domain_xml(name, disk_path, seed_path, network, memory_mib=1024, vcpus=2, mac=None, console_log=None):
    mac_xml = "<mac address='%s'/>" % mac if mac else ""
    log_xml = "<log file='%s' append='on'/>" % escape(console_log) if console_log else ""
    return f"""<domain type='{DOMAIN_TYPE}'>
  <name>{escape(name)}</name>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>{vcpus}</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/><apic/></features>
  <devices>
    <controller type='scsi' model='virtio-scsi'/>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/><source file='{escape(disk_path)}'/><target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/><source file='{escape(seed_path)}'/><target dev='sda' bus='scsi'/><readonly/>
    </disk>
    <interface type='network'><source network='{escape(network)}'/>{mac_xml}<model type='virtio'/></interface>
    <serial type='pty'>{log_xml}</serial>
    <console type='pty'/>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
  </devices>
</domain>"""


def boot_guest(
    conn,
    name,
    ssh_key: SSHKey,
    base_volume,
    network="default",
    memory_mib=1024,
    vcpus=2,
    disk_capacity=4 * 1024**3,
    mac=None,
    user_data: dict | None = None,
    network_config: dict | None = None,
    seed_volume=None,
) -> Guest:
    """Define and start a guest from an overlay of ``base_volume``; returns at once.

    With ``seed_volume`` (a volume the caller made and removes, such as one
    cloudinit_seed wrote) the guest boots with that seed, and ``user_data``
    and ``network_config`` are not used; otherwise a seed with ``ssh_key`` is
    made here. Call ``guest.wait_for_ssh()`` to wait for it, ``guest.destroy()``
    to remove it.
    """
    pool = base_volume.storagePoolLookupByVolume()
    guest = Guest(conn=conn, name=name, key=ssh_key)
    try:
        disk = overlay(pool, name + ".qcow2", base_volume, disk_capacity)
        guest.volumes.append(disk)
        seed_vol = seed_volume
        if seed_vol is None:
            seed_vol = make_seed_volume(
                conn, pool, name + "-seed.iso", name[:63], ssh_key.public, user_data, network_config
            )
            guest.volumes.append(seed_vol)
        guest.console_log = os.path.join("/var/log/libvirt/qemu", name + "-console.log")
        xml = domain_xml(name, disk.path(), seed_vol.path(), network, memory_mib, vcpus, mac, guest.console_log)
        dom = conn.defineXML(xml)
        dom.create()
    except BaseException:
        guest.destroy()
        raise
    return guest


def pool_path(pool):
    return default_pool_path(pool)
