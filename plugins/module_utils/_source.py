# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The source of a volume import (kvm_volume's ``source``): a file on the host
that runs the module or an http(s) URL with a SHA-256 checksum, read once from
its header on and hashed as it is read.

Two ways in: :meth:`Source.read` feeds the libvirt stream API (any hypervisor,
any pool); :meth:`Source.copy_into` copies a file source straight into a
volume file on this host (a directory pool of the hypervisor the module runs
on), in the kernel, while a second thread hashes the same pages.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import hashlib
import mmap
import os
import re
import threading
from http.client import HTTPException

from ansible.module_utils.urls import open_url

from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import LibvirtModuleError
from ansible_collections.iaas.kvm.plugins.module_utils._storage import probe_image

HEADER_BYTES = 4096
HASH_CHUNK = 4 * 1024 * 1024
COPY_CHUNK = 8 * 1024 * 1024
# copy_file_range refuses these pairs of files (other file systems, old kernels): sendfile copies them.
_NO_COPY_RANGE = (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF)
_CHECKSUM_RE = re.compile(r"^sha256:([0-9a-fA-F]{64})$")
_URL_RE = re.compile(r"^https?://", re.IGNORECASE)


class Source:
    """An image to import: a file on this host or an http(s) URL, hashed as it is read."""

    def __init__(self, location, checksum, validate_certs=True, timeout=30):
        self.location = location
        self.is_url = bool(_URL_RE.match(location))
        if not self.is_url and ("://" in location or not location.startswith("/")):
            raise LibvirtModuleError(
                "source %r must be an absolute path on the hypervisor or an http:// or https:// URL." % location
            )
        self.expected = None
        if checksum is not None:
            match = _CHECKSUM_RE.match(checksum.strip())
            if not match:
                raise LibvirtModuleError("checksum must be 'sha256:' followed by 64 hex digits, got %r." % checksum)
            self.expected = match.group(1).lower()
        if self.is_url and self.expected is None:
            raise LibvirtModuleError(
                "The URL source %s needs checksum: sha256:<64 hex digits>, so that the download can be verified."
                % location
            )
        self.validate_certs = validate_certs
        self.timeout = timeout
        self.length = None
        self.info = None
        self._fh = None
        self._pending = b""
        self._digest = hashlib.sha256()
        self.count = 0

    # --- files ---------------------------------------------------------------

    def stat(self):
        try:
            st = os.stat(self.location)
        except OSError as exc:
            raise LibvirtModuleError("Cannot read the source file %s: %s." % (self.location, exc.strerror)) from exc
        if not os.path.isfile(self.location):
            raise LibvirtModuleError("The source %s is not a regular file." % self.location)
        return st

    def file_sha256(self):
        """SHA-256 of the whole source file (hex)."""
        self.stat()
        digest = hashlib.sha256()
        with open(self.location, "rb") as handle:
            for chunk in iter(lambda: handle.read(HASH_CHUNK), b""):
                digest.update(chunk)
        return digest.hexdigest()

    # --- reading -------------------------------------------------------------

    def _fail(self, exc):
        what = "download %s" % self.location if self.is_url else "read %s" % self.location
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return LibvirtModuleError("Cannot %s: %s." % (what, str(reason).rstrip(".")))

    def open(self):
        """Open the source and read its header into ``info`` (see probe_image)."""
        try:
            if self.is_url:
                self._fh = open_url(self.location, validate_certs=self.validate_certs, timeout=self.timeout)
                length = self._fh.headers.get("Content-Length")
                self.length = int(length) if length and length.isdigit() else None
            else:
                self.stat()
                self._fh = open(self.location, "rb")  # noqa: SIM115 - closed by close()
                self.length = os.fstat(self._fh.fileno()).st_size
            head = b""
            while len(head) < HEADER_BYTES:
                chunk = self._fh.read(HEADER_BYTES - len(head))
                if not chunk:
                    break
                head += chunk
        except (OSError, HTTPException) as exc:
            self.close()
            raise self._fail(exc) from exc
        self._pending = head
        self.info = probe_image(head, self.length)
        return self.info

    def read(self, size):
        """Up to ``size`` bytes of the source (the header first), hashed on the way."""
        if self._pending:
            chunk, self._pending = self._pending[:size], self._pending[size:]
        else:
            try:
                chunk = self._fh.read(size)
            except (OSError, HTTPException) as exc:
                raise self._fail(exc) from exc
        self._digest.update(chunk)
        self.count += len(chunk)
        return chunk

    def sha256(self):
        """SHA-256 of what ``read`` (or ``copy_into``) returned (once it returned everything)."""
        return self._digest.hexdigest()

    # --- the local fast path -------------------------------------------------------

    def copy_into(self, path, progress=None):
        """Copy the opened file source into the existing file ``path`` (a volume
        of this host's directory pool, created sparse with the source's size)
        and hash it; returns the number of bytes copied.

        The data moves in the kernel (copy_file_range, sendfile where the file
        systems refuse it), region by region of the source's data (holes stay
        holes); a second thread hashes the source's pages as they are copied,
        so the file is read from the disk once. The copy is on the disk
        (fdatasync) when this returns. ``progress()`` is called after each
        chunk. A source that changes while it is copied is an error.
        """
        if self.is_url:
            raise ValueError("copy_into copies a file source")
        self._pending = b""
        src = self._fh.fileno()
        before = os.fstat(src)
        size = before.st_size
        hashed = _Hasher(src, size, self._digest)
        hashed.start()
        try:
            dst = os.open(path, os.O_WRONLY)
        except OSError as exc:
            hashed.join()
            raise self._fail(exc) from exc
        try:
            for offset, length in _data_regions(src, size):
                _copy_region(src, dst, offset, length, progress)
            os.fdatasync(dst)
        except OSError as exc:
            raise LibvirtModuleError("Cannot copy %s into %s: %s." % (self.location, path, exc.strerror)) from exc
        finally:
            os.close(dst)
            hashed.join()
        hashed.check()
        after = os.fstat(src)
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            raise LibvirtModuleError("The source %s changed while it was imported." % self.location)
        self.count = size
        return size

    def close(self):
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class _Hasher(threading.Thread):
    """Hash ``size`` bytes of file ``fd`` from its start (mapped, not copied) into ``digest``;
    hashlib lets go of the GIL, so this runs beside the copy."""

    def __init__(self, fd, size, digest):
        super().__init__(daemon=True)
        self.fd = fd
        self.size = size
        self.digest = digest
        self.error = None

    def run(self):
        if not self.size:
            return
        try:
            with mmap.mmap(self.fd, self.size, prot=mmap.PROT_READ) as mapped:
                view = memoryview(mapped)
                try:
                    for offset in range(0, self.size, HASH_CHUNK):
                        self.digest.update(view[offset : offset + HASH_CHUNK])
                finally:
                    view.release()
        except (OSError, ValueError) as exc:
            self.error = exc

    def check(self):
        if self.error is not None:
            raise LibvirtModuleError("Cannot hash the source: %s." % self.error)


def _data_regions(fd, size):
    """(offset, length) of the parts of file ``fd`` that hold data; the whole
    file where the file system cannot tell holes apart."""
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole is left
                return
            yield offset, size - offset
            return
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield start, end - start
        offset = end


def _copy_region(src, dst, offset, length, progress):
    end = offset + length
    while offset < end:
        count = min(COPY_CHUNK, end - offset)
        try:
            done = os.copy_file_range(src, dst, count, offset, offset)
        except OSError as exc:
            if exc.errno not in _NO_COPY_RANGE:
                raise
            os.lseek(dst, offset, os.SEEK_SET)
            done = os.sendfile(dst, src, offset, count)
        if done == 0:
            raise OSError(errno.EIO, "the source ended early")
        offset += done
        if progress is not None:
            progress()
