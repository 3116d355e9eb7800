# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The libvirt connection option shared by every module that talks to libvirtd.
    DOCUMENTATION = r"""
options:
  uri:
    description:
      - libvirt connection URI of the hypervisor.
      - The module runs on the inventory host and connects from there, so the
        default reaches the local system libvirtd of that host.
      - A remote URI such as C(qemu+ssh://root@host/system) works for every
        operation that goes through the libvirt API.
    type: str
    default: qemu:///system
requirements:
  - libvirt-python (C(python3-libvirt) on Debian and Ubuntu) on the host that runs the module
  - lxml (C(python3-lxml)) on the host that runs the module
"""

    # Modules that support check mode and diff mode fully.
    ATTRIBUTES = r"""
attributes:
  check_mode:
    support: full
    description: Can run in check_mode and return changed status prediction without modifying target.
  diff_mode:
    support: full
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
  platform:
    support: full
    platforms: posix
    description: Target OS/families that can be operated against.
"""

    # Read-only modules (*_info).
    INFO_ATTRIBUTES = r"""
attributes:
  check_mode:
    support: full
    description: The module changes nothing, so it runs unchanged in check mode.
  diff_mode:
    support: none
    description: The module changes nothing and has no diff.
  platform:
    support: full
    platforms: posix
    description: Target OS/families that can be operated against.
"""
