# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Where the GPU modules find the host's kernel interfaces and configuration.
    DOCUMENTATION = r"""
options:
  root:
    description:
      - Prefix under which the module finds the host's C(proc/cmdline), C(etc/), C(usr/share/misc/pci.ids)
        and the tools it may run (and C(sys/), unless O(sysfs_root) is given). Tests and image builds point
        it at another tree.
      - Under a prefix other than C(/) the module runs no command.
    type: path
    default: /
  sysfs_root:
    description:
      - Where sysfs is mounted. Defaults to C(<root>/sys).
    type: path
"""
