# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Files the modules write on the host (seeds, the modprobe.d, udev and mdevctl configuration)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os
import tempfile

from ansible_collections.iaas.kvm.plugins.module_utils._interrupt import kill_point

_TEMP_SUFFIX = ".iaas-tmp"


def write_atomic(path, data, mode):
    """Write ``data`` (bytes) to ``path`` with ``mode``: a hidden temporary file
    in the same directory, synced, then renamed over ``path``, so a reader sees
    the old or the new content and never a part. A temporary file that an
    interrupted earlier write left beside ``path`` is removed. Raises OSError."""
    directory, base = os.path.split(path)
    prefix = "." + base + "."
    for stale in glob.glob(os.path.join(glob.escape(directory or "."), glob.escape(prefix) + "*" + _TEMP_SUFFIX)):
        os.unlink(stale)
    handle, temp = tempfile.mkstemp(dir=directory or ".", prefix=prefix, suffix=_TEMP_SUFFIX)
    try:
        os.fchmod(handle, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(handle, view) :]
        os.fsync(handle)
        os.close(handle)
        handle = None
        kill_point("files:before-rename")
        os.replace(temp, path)
        temp = None
        directory_fd = os.open(directory or ".", os.O_RDONLY)
        try:
            os.fsync(directory_fd)
        finally:
            os.close(directory_fd)
    finally:
        if handle is not None:
            os.close(handle)
        if temp is not None and os.path.exists(temp):
            os.unlink(temp)


def read_text(path):
    """The text of ``path``, or None when it cannot be read (a file the module has not written yet)."""
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return None


def write_file(path, text):
    """Write ``text`` to ``path`` atomically (:func:`write_atomic`, mode 0644, the directory made
    where missing); None removes the file."""
    if text is None:
        if os.path.lexists(path):
            os.remove(path)
        return
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    write_atomic(path, text.encode("utf-8"), 0o644)
