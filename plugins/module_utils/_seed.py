# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""cloud-init NoCloud seeds: the documents (user-data, meta-data,
network-config, vendor-data) rendered from a task's options, an ISO 9660 image
with the label ``cidata`` (Joliet and Rock Ridge) built with pycdlib, and the
documents read back from an existing image, so that a module decides "changed"
by what the seed says, not by its bytes.

pycdlib stamps every directory record and volume descriptor with the time of
the call; :func:`build_iso` pins its clock to :data:`FIXED_TIME` (UTC), so the
same documents always give the same bytes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import email
import email.policy
import hashlib
import io
import re
import struct
import sys
import time
import traceback
from email.message import EmailMessage, MIMEPart

from ansible.module_utils.basic import missing_required_lib
from ansible.module_utils.common.yaml import HAS_YAML, SafeDumper, yaml_load

from ansible_collections.iaas.kvm.plugins.module_utils import _crypt
from ansible_collections.iaas.kvm.plugins.module_utils._diff import MASK
from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import LibvirtModuleError
from ansible_collections.iaas.kvm.plugins.module_utils._names import validate_hostname

PYCDLIB_IMPORT_ERROR = None
try:
    import pycdlib
    from pycdlib.pycdlibexception import PyCdlibException
except ImportError:
    pycdlib = None
    PyCdlibException = None
    PYCDLIB_IMPORT_ERROR = traceback.format_exc()

YAML_IMPORT_ERROR = None
if HAS_YAML:
    import yaml
else:
    yaml = None
    YAML_IMPORT_ERROR = "PyYAML is not installed."

VOLUME_LABEL = "cidata"
# 2000-01-01T00:00:00Z: every date inside a seed.
FIXED_TIME = 946684800
# The files of a NoCloud seed, in the order they are written.
DOCUMENTS = ("user-data", "meta-data", "network-config", "vendor-data")
# Seeds are small; an image larger than this is not one.
READ_LIMIT = 16 * 1024 * 1024

CLOUD_CONFIG = "#cloud-config"
# Kinds of user-data text that cloud-init recognises by their first line, and the
# MIME type of each inside a multipart document.
_TEXT_KINDS = (
    ("#cloud-config-archive", "text/cloud-config-archive"),
    ("#cloud-config", "text/cloud-config"),
    ("#cloud-boothook", "text/cloud-boothook"),
    ("#include-once", "text/x-include-once-url"),
    ("#include", "text/x-include-url"),
    ("#part-handler", "text/part-handler"),
    ("## template: jinja", "text/jinja2"),
    ("#!", "text/x-shellscript"),
)
_MIME_START = re.compile(r"^(content-type|mime-version)\s*:", re.IGNORECASE)

# Lines whose value is a secret (cloud-config keys), and crypt hashes anywhere.
_SECRET_LINE = re.compile(
    r"^[ \t]*(?:-[ \t]+)?[\"']?(?:password|passwd|hashed_passwd|plain_text_passwd)[\"']?[ \t]*:[ \t]*(?P<value>[^\s#].*?)[ \t]*$",
    re.MULTILINE,
)
_CRYPT_HASH = re.compile(r"\$(?:1|2[abxy]?|5|6|7|y|gy|sha1|md5)\$[^\s\"',]+")

# The conveniences merged into user-data, in the order they are written.
CONVENIENCES = ("hostname", "users", "ssh_authorized_keys", "password", "packages", "runcmd")


class SeedError(LibvirtModuleError, ValueError):
    """A problem with the task's input, as one sentence (modules report it as
    they report every LibvirtModuleError)."""


class NotASeed(Exception):
    """The existing file or volume is not a NoCloud seed (says why)."""


# ---------------------------------------------------------------------------
# YAML
# ---------------------------------------------------------------------------


if yaml is not None:

    class _SeedDumper(SafeDumper):
        """Block style, multi-line strings as literal blocks, no line folding."""

    def _represent_str(dumper, value):
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _SeedDumper.add_representer(str, _represent_str)


def dump_yaml(data):
    """``data`` as block-style YAML text (keys in the order given)."""
    return yaml.dump(
        data,
        Dumper=_SeedDumper,
        default_flow_style=False,
        sort_keys=False,
        allow_unicode=True,
        width=2**30,
    )


def load_yaml(text, what):
    """Parse YAML ``text``; a parse error becomes a SeedError naming ``what``."""
    try:
        return yaml_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = " (line %d, column %d)" % (mark.line + 1, mark.column + 1) if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SeedError("%s is not valid YAML%s: %s." % (what, where, problem.rstrip("."))) from exc


def _mapping(value, what):
    """``value`` if it is a mapping (None counts as empty), else a SeedError."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SeedError("%s must be a YAML mapping, not a %s." % (what, _kind_of(value)))
    return value


def _kind_of(value):
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


# ---------------------------------------------------------------------------
# user-data and vendor-data
# ---------------------------------------------------------------------------


def text_kind(text):
    """The MIME type of a user-data text (``multipart/mixed`` for a MIME
    document), or None when cloud-init would not recognise it."""
    if _MIME_START.match(text):
        return "multipart/mixed"
    for start, mime_type in _TEXT_KINDS:
        if text.startswith(start):
            return mime_type
    return None


def cloud_config_text(data):
    return CLOUD_CONFIG + "\n" + dump_yaml(data)


def _merge(data, conveniences, what):
    """``data`` (a dict) with ``conveniences`` added; a convenience whose key
    ``data`` already holds with another value is an error."""
    merged = dict(data)
    for key, value in conveniences.items():
        if key == "password" and key in merged:
            raise SeedError("password is given both as an option and in %s; give it once." % what)
        if key in merged and merged[key] != value:
            raise SeedError(
                "%s is given both as an option (%r) and in %s (%r); give it once." % (key, value, what, merged[key])
            )
        merged[key] = value
    return merged


def multipart(parts):
    """A MIME multipart document of ``(mime_type, text)`` parts, with a
    boundary derived from the parts so that the same parts give the same text."""
    digest = hashlib.sha256()
    for mime_type, text in parts:
        digest.update(mime_type.encode("utf-8") + b"\0" + text.encode("utf-8") + b"\0")
    policy = email.policy.default.clone(max_line_length=0)
    message = EmailMessage(policy=policy)
    message.make_mixed()
    message.set_boundary("===============iaas-kvm-%s==" % digest.hexdigest()[:24])
    for mime_type, text in parts:
        part = MIMEPart(policy=policy)
        part.set_content(text, subtype=mime_type.split("/", 1)[1], charset="utf-8", cte="8bit")
        message.attach(part)
    return message.as_string()


def multipart_parts(text):
    """``(mime_type, text)`` of every leaf part of a MIME document."""
    parts = []
    for part in email.message_from_string(text).walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True) or b""
        parts.append((part.get_content_type(), payload.decode(part.get_content_charset() or "utf-8", "replace")))
    return parts


def render_user_data(value, conveniences=None, what="user_data"):
    """The user-data (or vendor-data) document for ``value``: a dict (rendered
    as ``#cloud-config``), a text, or None (an empty ``#cloud-config``), with
    ``conveniences`` (a dict of cloud-config keys) merged in."""
    conveniences = conveniences or {}
    if value is None or isinstance(value, dict):
        return cloud_config_text(_merge(value or {}, conveniences, what))
    if not isinstance(value, str):
        raise SeedError("%s must be a dict or a text, not a %s." % (what, _kind_of(value)))
    kind = text_kind(value)
    if kind is None:
        raise SeedError(
            "%s text must start with #cloud-config, #! (a script) or another cloud-init marker, "
            "or be a MIME multipart document." % what
        )
    if kind == "text/cloud-config":
        data = _mapping(load_yaml(value, what), "%s after #cloud-config" % what)
        return cloud_config_text(_merge(data, conveniences, what)) if conveniences else value
    if kind == "text/cloud-config-archive":
        load_yaml(value, what)
    if not conveniences:
        return value
    if kind == "multipart/mixed":
        raise SeedError(
            "%s is a MIME multipart document, into which %s cannot be merged; add them as a "
            "text/cloud-config part of it instead." % (what, ", ".join(sorted(conveniences)))
        )
    return multipart([("text/cloud-config", cloud_config_text(_merge({}, conveniences, what))), (kind, value)])


def cloud_configs(text):
    """The cloud-config mappings inside a user-data text: a ``#cloud-config``
    document, or the cloud-config parts of a multipart."""
    if not text:
        return
    candidates = [text]
    if text_kind(text) == "multipart/mixed":
        candidates = [part for mime_type, part in multipart_parts(text) if mime_type == "text/cloud-config"]
    for candidate in candidates:
        if candidate.startswith(CLOUD_CONFIG) and not candidate.startswith(CLOUD_CONFIG + "-"):
            try:
                data = yaml_load(candidate)
            except yaml.YAMLError:
                continue
            if isinstance(data, dict):
                yield data


def cloud_config_of(text):
    """The first cloud-config mapping inside a user-data text, or {}."""
    return next(cloud_configs(text), {})


# ---------------------------------------------------------------------------
# meta-data and network-config
# ---------------------------------------------------------------------------


def seed_stem(destination):
    """The name of a seed (a volume name or a path) without its directory,
    ``.iso`` and a ``-seed`` suffix: ``/x/web1-seed.iso`` -> ``web1``."""
    base = (destination or "").rstrip("/").rsplit("/", 1)[-1]
    base = re.sub(r"\.iso$", "", base, flags=re.IGNORECASE)
    return re.sub(r"[-_]seed$", "", base) or base or "seed"


def default_instance_id(hostname, fallback):
    """A stable instance-id (never random): the host name, else the seed's stem."""
    return hostname or seed_stem(fallback)


def meta_data_mapping(meta_data, hostname, fallback):
    """The meta-data: ``instance-id`` first (default: ``hostname``, else
    ``local-hostname``, else the stem of ``fallback``, the seed's name), then
    ``local-hostname`` (default ``hostname``), then the rest as given."""
    data = dict(_mapping(meta_data, "meta_data"))
    if hostname is not None:
        have = data.get("local-hostname")
        if have is not None and have != hostname:
            raise SeedError("hostname %r differs from local-hostname %r in meta_data; give it once." % (hostname, have))
        data.setdefault("local-hostname", hostname)
    instance_id = data.pop("instance-id", None)
    if instance_id is None:
        instance_id = default_instance_id(hostname or data.get("local-hostname"), fallback)
    elif not isinstance(instance_id, (str, int)) or isinstance(instance_id, bool) or not str(instance_id).strip():
        raise SeedError("instance-id in meta_data must be a non-empty string.")
    ordered = {"instance-id": str(instance_id)}
    if "local-hostname" in data:
        ordered["local-hostname"] = data.pop("local-hostname")
    ordered.update(data)
    return ordered


def render_network_config(network_config):
    """The network-config document (version 1 or 2, at the top or under ``network``)."""
    if network_config is None:
        return None
    data = _mapping(network_config, "network_config")
    inner = data["network"] if isinstance(data.get("network"), dict) else data
    if "version" not in inner:
        raise SeedError("network_config needs a version (2 for a netplan-style configuration, or 1).")
    if inner["version"] not in (1, 2) or isinstance(inner["version"], bool):
        raise SeedError("network_config version must be 1 or 2, not %r." % (inner["version"],))
    return dump_yaml(data)


# ---------------------------------------------------------------------------
# Comparing and showing documents
# ---------------------------------------------------------------------------


def _yaml_data(name, text):
    """The data of a YAML document (None when it is not one or does not parse)."""
    if text is None:
        return None
    if name in ("user-data", "vendor-data") and (
        not text.startswith(CLOUD_CONFIG) or text.startswith(CLOUD_CONFIG + "-")
    ):
        return None
    try:
        return ("yaml", yaml_load(text))
    except yaml.YAMLError:
        return None


def same_document(name, before, after):
    """True when two versions of document ``name`` say the same: the same text,
    or YAML documents with the same data (another YAML emitter's spelling of
    the same configuration is no change)."""
    if before == after:
        return True
    if before is None or after is None:
        return False
    data = _yaml_data(name, before)
    return data is not None and data == _yaml_data(name, after)


def changed_documents(before, after):
    """Names of the documents that differ between two ``{name: text}`` maps."""
    names = [n for n in DOCUMENTS if n in before or n in after]
    names += sorted(n for n in set(before) | set(after) if n not in DOCUMENTS)
    return [n for n in names if not same_document(n, before.get(n), after.get(n))]


def unchanged(documents, before):
    """True when ``documents`` (``{name: Document}``) say what the seed's
    documents ``before`` (``{name: text}``) say."""
    after = {name: doc.text for name, doc in documents.items()}
    return not changed_documents(before, after)


def readable(text):
    """A document as shown: a MIME multipart document as its decoded parts."""
    if text is None or text_kind(text) != "multipart/mixed":
        return text
    shown = []
    for number, (mime_type, part) in enumerate(multipart_parts(text), 1):
        shown.append("# part %d: %s\n%s" % (number, mime_type, part if part.endswith("\n") else part + "\n"))
    return "".join(shown)


_SECRET_KEYS = ("password", "passwd", "hashed_passwd", "plain_text_passwd")


def _chpasswd_entries_of(data):
    """The ``user:password`` entries of ``chpasswd.list`` in a cloud-config
    mapping (a multi-line string or a list of strings, as cloud-init reads them)."""
    chpasswd = data.get("chpasswd")
    listed = chpasswd.get("list") if isinstance(chpasswd, dict) else None
    if isinstance(listed, str):
        listed = listed.splitlines()
    return [e.strip() for e in listed if isinstance(e, str) and ":" in e.strip()] if isinstance(listed, list) else []


def _chpasswd_entries(text):
    """The ``chpasswd.list`` entries of every cloud-config of a user-data text."""
    return [entry for data in cloud_configs(text) for entry in _chpasswd_entries_of(data)]


def secret_strings(user_data):
    """Every secret string in user-data given as a mapping or a text: the values
    of the password keys at any depth, the passwords of ``chpasswd.list`` and the
    crypt hashes. Modules add them to ``no_log_values``, so Ansible masks them
    wherever they would appear in the output (the task's arguments included)."""
    if isinstance(user_data, dict):
        mappings = [user_data]
    elif isinstance(user_data, str):
        mappings = list(cloud_configs(user_data))
    else:
        return set()
    found = set()

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in _SECRET_KEYS and isinstance(value, (str, int)) and not isinstance(value, bool):
                    found.add(str(value))
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for data in mappings:
        walk(data)
        found.update(entry.partition(":")[2] for entry in _chpasswd_entries_of(data))
    if isinstance(user_data, str):
        found.update(secret_values(user_data))
    return {value for value in found if value}


def _secrets(text, entries=()):
    """``(start, end, value)`` of every secret value in a readable text: the
    values of the password keys, the passwords of the ``chpasswd.list``
    ``entries`` and crypt hashes anywhere."""
    spans = [(m.start("value"), m.end("value"), m.group("value")) for m in _SECRET_LINE.finditer(text)]
    for entry in entries:
        _user, _colon, password = entry.partition(":")
        position = text.find(entry)
        while position >= 0 and password:
            start = position + len(entry) - len(password)
            spans.append((start, start + len(password), password))
            position = text.find(entry, position + len(entry))
    for match in _CRYPT_HASH.finditer(text):
        if not any(start <= match.start() < end for start, end, _value in spans):
            spans.append((match.start(), match.end(), match.group(0)))
    return _disjoint(spans)


def _disjoint(spans):
    """``spans`` sorted, without those inside an earlier one."""
    result = []
    for span in sorted(spans):
        if result and span[0] < result[-1][1]:
            continue
        result.append(span)
    return result


def secret_values(text):
    """The secret values of a document (as :func:`mask_text` finds them)."""
    if text is None:
        return set()
    return {value for _start, _end, value in _secrets(readable(text), _chpasswd_entries(text))}


def mask_text(text, known=None):
    """A document as shown in results and diffs: readable, with secret values
    masked. With ``known`` (the secrets of the document it replaces), a masked
    value that is not among them is marked as changed."""
    if text is None:
        return None
    entries = _chpasswd_entries(text)
    text = readable(text)
    pieces, position = [], 0
    for start, end, value in _secrets(text, entries):
        pieces.append(text[position:start])
        pieces.append(MASK + (" (changed)" if known is not None and value not in known else ""))
        position = end
    pieces.append(text[position:])
    return "".join(pieces)


def masked_documents(documents):
    """``{name: masked text}`` of the documents that are present."""
    return {name: mask_text(text) for name, text in documents.items() if text is not None}


# ---------------------------------------------------------------------------
# The ISO image
# ---------------------------------------------------------------------------


class _FixedClock:
    """Stands in for the ``time`` module inside pycdlib: a clock stopped at
    ``seconds``, in UTC."""

    def __init__(self, seconds):
        self._seconds = seconds

    def time(self):
        return float(self._seconds)

    def localtime(self, seconds=None):
        return time.gmtime(self._seconds if seconds is None else seconds)

    gmtime = localtime

    def __getattr__(self, name):
        return getattr(time, name)


@contextlib.contextmanager
def fixed_clock(seconds=FIXED_TIME):
    """Pin the clock of every pycdlib module (they call ``time.time()`` and
    ``time.localtime()`` throughout) to ``seconds``, UTC."""
    clock = _FixedClock(seconds)
    patched = [
        module
        for name, module in list(sys.modules.items())
        if (name == "pycdlib" or name.startswith("pycdlib.")) and getattr(module, "time", None) is time
    ]
    for module in patched:
        module.time = clock
    try:
        yield
    finally:
        for module in patched:
            module.time = time


def iso9660_name(name):
    """The ISO 9660 (level 3) name of a document: ``user-data`` -> ``/USER_DATA.;1``."""
    return "/%s.;1" % re.sub(r"[^A-Z0-9_]", "_", name.upper())


def build_iso(documents):
    """The seed image (bytes) holding ``documents`` (``{name: text}``)."""
    names = [n for n in DOCUMENTS if documents.get(n) is not None]
    names += sorted(n for n in documents if n not in DOCUMENTS and documents[n] is not None)
    out = io.BytesIO()
    with fixed_clock():
        iso = pycdlib.PyCdlib()
        iso.new(interchange_level=3, vol_ident=VOLUME_LABEL, joliet=3, rock_ridge="1.09")
        for name in names:
            data = documents[name].encode("utf-8")
            iso.add_fp(io.BytesIO(data), len(data), iso9660_name(name), rr_name=name, joliet_path="/" + name)
        iso.write_fp(out)
        iso.close()
    return out.getvalue()


# What pycdlib (or the struct module under it) raises for bytes that are not an ISO image.
_READ_ERRORS = (struct.error, ValueError, IndexError, KeyError, UnicodeDecodeError, EOFError)


def _child_name(child, namespace):
    if namespace == "rr_path":
        return child.rock_ridge.name().decode("utf-8", "replace")
    return child.file_identifier().decode("utf-16_be", "replace")


def read_iso(fp):
    """The label and the files (``{name: text}``) of the seed image in file
    object ``fp``. Raises NotASeed when it is not an ISO 9660 image labelled
    ``cidata`` with Rock Ridge or Joliet names."""
    iso = pycdlib.PyCdlib()
    try:
        iso.open_fp(fp)
    except PyCdlibException as exc:
        raise NotASeed("it is not an ISO 9660 image (%s)" % str(exc).rstrip(".")) from exc
    except _READ_ERRORS as exc:
        raise NotASeed("it is not an ISO 9660 image") from exc
    try:
        label = iso.pvd.volume_identifier.decode("ascii", "replace").strip(" \0")
        if label.lower() != VOLUME_LABEL:
            raise NotASeed("its volume label is %r, not %r" % (label, VOLUME_LABEL))
        if iso.has_rock_ridge():
            namespace = "rr_path"
        elif iso.has_joliet():
            namespace = "joliet_path"
        else:
            raise NotASeed("it has neither Rock Ridge nor Joliet names")
        files = {}
        for child in iso.list_children(**{namespace: "/"}):
            if child.is_dot() or child.is_dotdot() or not child.is_file():
                continue
            name = _child_name(child, namespace)
            content = io.BytesIO()
            iso.get_file_from_iso_fp(content, **{namespace: "/" + name})
            files[name] = content.getvalue().decode("utf-8", "replace")
        return label, files
    except PyCdlibException as exc:
        raise NotASeed("its files cannot be read (%s)" % str(exc).rstrip(".")) from exc
    except _READ_ERRORS as exc:
        raise NotASeed("its files cannot be read") from exc
    finally:
        iso.close()


def read_seed(data):
    """The documents (``{name: text}``) of the seed image ``data`` (bytes);
    NotASeed when it is not one."""
    return read_iso(io.BytesIO(data))[1]


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def check_libraries(module):
    """Fail the module with ansible's standard message when pycdlib or PyYAML is missing."""
    if pycdlib is None:
        module.fail_json(msg=missing_required_lib("pycdlib"), exception=PYCDLIB_IMPORT_ERROR)
    if yaml is None:
        module.fail_json(msg=missing_required_lib("PyYAML"), exception=YAML_IMPORT_ERROR)


# ---------------------------------------------------------------------------
# A task's seed
# ---------------------------------------------------------------------------

# A password given as a crypt hash that cloud-init recognises in the password
# key (cloud-init passes these forms to chpasswd -e): SHA-256, SHA-512, bcrypt.
_GIVEN_HASH = re.compile(r"^\$(?:2a|2y|5|6)(?:\$[^$\s:]+){2,3}$")
# Crypt hashes that are refused, and why.
_WEAK_HASH = re.compile(r"^(?:\$1\$|\$md5[$,]|\$sha1\$|_[./0-9A-Za-z]{19}$|[./0-9A-Za-z]{13}$)")
_OTHER_HASH = re.compile(r"^\$(?:y|gy|7|2b|2x)\$")


def check_password_scheme(password):
    """Refuse a password given as a crypt hash of a weak scheme (DES, MD5, SHA-1),
    or of a scheme that cloud-init's ``password`` key does not recognise as a
    hash (it would set the hash itself as the password)."""
    if _WEAK_HASH.match(password):
        raise SeedError(
            "password is a crypt hash of a weak scheme (DES, MD5 or SHA-1; a plain password of exactly 13 "
            "characters of ./0-9A-Za-z also reads as a DES hash); give the plain password or a SHA-512 ($6$) hash."
        )
    if _OTHER_HASH.match(password):
        raise SeedError(
            "password is a yescrypt, scrypt or $2b$/$2x$ bcrypt hash, which cloud-init's password key takes for "
            "plain text; give the plain password, a SHA-512 ($6$) hash, or set the hash as hashed_passwd of a user "
            "in users."
        )


class Document:
    """One file of a seed: its name and its text."""

    __slots__ = ("name", "text")

    def __init__(self, name, text):
        self.name = name
        self.text = text

    def __repr__(self):
        return "Document(%r)" % self.name


def authorized_keys(keys):
    """SSH keys one a line: entries with several lines split, blank lines and comments dropped."""
    result = []
    for entry in keys or []:
        for raw in str(entry).splitlines():
            line = raw.strip()
            if line and not line.startswith("#"):
                result.append(line)
    return result


class SeedSpec:
    """The documents a task asks for, checked when made (a SeedError names the
    first problem), rendered by :meth:`documents` once the password hash is known."""

    def __init__(self, params, destination):
        self.params = params
        self.hostname = params.get("hostname")
        if self.hostname is not None:
            try:
                validate_hostname(self.hostname, "hostname")
            except LibvirtModuleError as exc:
                raise SeedError(str(exc)) from None
        self.password = params.get("password")
        if self.password is not None and not self.password:
            raise SeedError("password must not be empty.")
        if self.password is not None and "\0" in self.password:
            raise SeedError("password must not contain a NUL character.")
        if self.password is not None:
            check_password_scheme(self.password)
        meta = meta_data_mapping(params.get("meta_data"), self.hostname, destination)
        self.instance_id = meta["instance-id"]
        self.meta_data = dump_yaml(meta)
        self.network_config = render_network_config(params.get("network_config"))
        vendor_data = params.get("vendor_data")
        self.vendor_data = None if vendor_data is None else render_user_data(vendor_data, None, "vendor_data")
        # Render once with a stand-in hash, so that a conflict fails before anything is read or written.
        self.documents(MASK if self.password is not None else None)

    def conveniences(self, password_hash):
        """The cloud-config keys the options set, in a fixed order; empty lists are left out."""
        params = self.params
        values = dict(
            hostname=self.hostname,
            users=params.get("users") or None,
            ssh_authorized_keys=authorized_keys(params.get("ssh_authorized_keys")) or None,
            password=password_hash,
            packages=params.get("packages") or None,
            runcmd=params.get("runcmd") or None,
        )
        return {key: values[key] for key in CONVENIENCES if values[key] is not None}

    def password_hash(self, before_user_data=None):
        """The hash to store for the password: the one in ``before_user_data``
        (the seed's current user-data) when it verifies against the password,
        the password itself when it is a crypt hash, else a new SHA-512 hash.
        None without a password."""
        if self.password is None:
            return None
        if _GIVEN_HASH.match(self.password):
            return self.password
        existing = cloud_config_of(before_user_data).get("password")
        if isinstance(existing, str) and _crypt.verify(self.password, existing):
            return existing
        return _crypt.sha512_crypt(self.password)

    def documents(self, password_hash):
        """``{name: Document}`` of the seed, in the order they are written."""
        user_data = render_user_data(self.params.get("user_data"), self.conveniences(password_hash))
        texts = (
            ("user-data", user_data),
            ("meta-data", self.meta_data),
            ("network-config", self.network_config),
            ("vendor-data", self.vendor_data),
        )
        return {name: Document(name, text) for name, text in texts if text is not None}
