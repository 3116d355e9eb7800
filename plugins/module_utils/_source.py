# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The source of a volume import (kvm_volume's ``source``): a file on the host
that runs the module or an http(s) URL with a SHA-256 checksum, read once from
its header on and hashed as it is read."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import re
from http.client import HTTPException

from ansible.module_utils.urls import open_url

from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import LibvirtModuleError
from ansible_collections.iaas.kvm.plugins.module_utils._storage import probe_image

HEADER_BYTES = 4096
HASH_CHUNK = 4 * 1024 * 1024
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
        """SHA-256 of what ``read`` returned (once it returned everything)."""
        return self._digest.hexdigest()

    def close(self):
        if self._fh is not None:
            self._fh.close()
            self._fh = None
