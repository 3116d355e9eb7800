# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SR-IOV virtual functions of a physical function (a GPU or a NIC): the writes
that change their number under the kernel's rules, and the udev rules that set
it again at boot.

The kernel's rules (``sriov_numvfs_store`` in drivers/pci/iov.c): the count
changes only through the driver bound to the physical function, never above
``sriov_totalvfs``, and from a non-zero count only to 0 (a new count needs 0
first). The VFs sit at ``sriov_offset`` + n * ``sriov_stride`` routing IDs
from the physical function, so their addresses are known before they exist.
With ``sriov_drivers_autoprobe`` at 0 new VFs stay without a driver until one
is chosen for them (vfio-pci for plain passthrough).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.iaas.kvm.plugins.module_utils._files import read_text

RULES_FILE = os.path.join("etc", "udev", "rules.d", "70-iaas-kvm-sriov.rules")
_PF_LINE_RE = re.compile(r"^# pf ([0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]) (\d+) (host|vfio)$")


def vf_addresses(pf, offset, stride, count):
    """The addresses the kernel gives the first ``count`` VFs of ``pf``."""
    domain, bus, rest = pf.split(":")
    slot, function = rest.split(".")
    rid = int(bus, 16) << 8 | int(slot, 16) << 3 | int(function, 16)
    result = []
    for index in range(count):
        vf = rid + offset + index * stride
        result.append("%s:%02x:%02x.%x" % (domain, vf >> 8, (vf >> 3) & 0x1F, vf & 7))
    return result


def count_steps(sysfs, pf, current, wanted, autoprobe, vf_driver):
    """The writes that bring ``pf`` from ``current`` to ``wanted`` VFs, each with its action and
    what to wait for (``wait``: the number of VFs the kernel shows after it)."""
    if wanted == current:
        return []
    steps = []
    if current and wanted:
        steps.append(
            dict(path=sysfs.numvfs_path(pf), value="0", wait=0, action="disable the %d VFs of %s" % (current, pf))
        )
    if wanted:
        probe = "0" if vf_driver == "vfio" else "1"
        if autoprobe is not None and autoprobe != (probe == "1"):
            steps.append(
                dict(
                    path=sysfs.autoprobe_path(pf),
                    value=probe,
                    wait=None,
                    action="%s host drivers to probe new VFs of %s" % ("let" if probe == "1" else "stop", pf),
                )
            )
        steps.append(
            dict(
                path=sysfs.numvfs_path(pf), value=str(wanted), wait=wanted, action="enable %d VFs on %s" % (wanted, pf)
            )
        )
    else:
        steps.append(
            dict(path=sysfs.numvfs_path(pf), value="0", wait=0, action="disable the %d VFs of %s" % (current, pf))
        )
    return steps


# -- the boot-time configuration (persistent: true) -------------------------------------


def rules_path(root):
    return os.path.join(root, RULES_FILE)


def read_rules(path):
    """``{pf: (count, vf_driver)}`` from the module's udev rules file (empty when absent)."""
    entries = {}
    for line in (read_text(path) or "").splitlines():
        match = _PF_LINE_RE.match(line.strip())
        if match:
            entries[match.group(1)] = (int(match.group(2)), match.group(3))
    return entries


def render_rules(entries, vfs_of):
    """The rules file for ``entries`` (``{pf: (count, vf_driver)}``), or None when none is left.
    ``vfs_of(pf, count)`` gives the addresses of a PF's VFs."""
    if not entries:
        return None
    lines = [
        "# Managed by iaas.kvm.kvm_sriov (persistent: true); changes here are overwritten.",
        "# The kernel forgets sriov_numvfs at reboot: these rules set it again when the physical",
        "# function's driver binds, and bind the VFs of a vfio entry to vfio-pci as they appear.",
    ]
    for pf in sorted(entries):
        count, vf_driver = entries[pf]
        lines.append("# pf %s %d %s" % (pf, count, vf_driver))
        autoprobe = 'ATTR{sriov_drivers_autoprobe}="0", ' if vf_driver == "vfio" else ""
        lines.append(
            'ACTION=="bind", SUBSYSTEM=="pci", KERNEL=="%s", %sATTR{sriov_numvfs}="%d"' % (pf, autoprobe, count)
        )
        if vf_driver == "vfio":
            lines.extend(
                'ACTION=="add", SUBSYSTEM=="pci", KERNEL=="%s", ATTR{driver_override}="vfio-pci", '
                "RUN+=\"/bin/sh -c 'echo $kernel > /sys/bus/pci/drivers_probe'\"" % vf
                for vf in vfs_of(pf, count)
            )
    return "\n".join(lines) + "\n"
