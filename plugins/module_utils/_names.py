# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The names the modules accept: libvirt object names (pools, volumes,
networks), which must be safe as file names, and host names (RFC 1123), used
for guests' host names, DHCP reservations, DNS entries and DNS domains."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import LibvirtModuleError

# A file name in a pool's directory (or a network's config file), nothing more.
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+:@-]{0,254}$")
# RFC 1123: labels of letters, digits and hyphens, neither starting nor ending with a hyphen.
_LABEL_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def validate_name(name, what="volume name"):
    """Return ``name``; raise LibvirtModuleError unless it is a safe libvirt object name."""
    if not isinstance(name, str) or not name:
        raise LibvirtModuleError("The %s must not be empty." % what)
    if "/" in name or "\\" in name or name in (".", "..") or ".." in name.split("."):
        raise LibvirtModuleError("The %s %r must not contain path separators or '..'." % (what, name))
    if ".." in name:
        raise LibvirtModuleError("The %s %r must not contain '..'." % (what, name))
    if not _NAME_RE.fullmatch(name):
        raise LibvirtModuleError(
            "The %s %r may hold only letters, digits and _ . + : @ - (up to 255 characters, "
            "not starting with a dot or dash)." % (what, name)
        )
    return name


def validate_hostname(name, what="host name"):
    """Return ``name``; raise LibvirtModuleError unless it is an RFC 1123 host name:
    dot-separated labels of 1-63 letters, digits and inner hyphens, 253 characters
    in all, with no white space and no trailing dot."""
    if (
        not isinstance(name, str)
        or not 0 < len(name) <= 253
        or not all(_LABEL_RE.match(label) for label in name.split("."))
    ):
        raise LibvirtModuleError(
            "%r is not a valid %s (RFC 1123: letters, digits and inner '-', in dot-separated labels of up to "
            "63 characters, 253 in all)." % (name, what)
        )
    return name
