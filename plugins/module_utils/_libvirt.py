# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one seam between the modules and libvirtd.

Every module opens its connection through :func:`connect` (tests replace this
one function, or point ``uri`` at ``test:///default``), maps libvirt errors to
one sentence with :func:`error_message`, and asks "who uses this?" through the
helpers at the bottom, which parse domain XML with lxml.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import re
import traceback

LIBVIRT_IMPORT_ERROR = None
LXML_IMPORT_ERROR = None
try:
    import libvirt
except ImportError:
    libvirt = None
    LIBVIRT_IMPORT_ERROR = traceback.format_exc()

try:
    from lxml import etree
except ImportError:
    etree = None
    LXML_IMPORT_ERROR = traceback.format_exc()


DEFAULT_URI = "qemu:///system"

# Merged into every module's argument_spec.
URI_ARGUMENT_SPEC = dict(uri=dict(type="str", default=DEFAULT_URI))


class LibvirtModuleError(Exception):
    """An error whose message is already a sentence for the user."""


def check_libraries(module, need_lxml=True):
    """Fail the module with ansible's standard message when a library is missing."""
    # Imported here, so that module_utils without a module (tests/hardware) need no Ansible.
    from ansible.module_utils.basic import missing_required_lib

    if libvirt is None:
        module.fail_json(msg=missing_required_lib("libvirt-python"), exception=LIBVIRT_IMPORT_ERROR)
    if need_lxml and etree is None:
        module.fail_json(msg=missing_required_lib("lxml"), exception=LXML_IMPORT_ERROR)


def _silence_default_error_handler():
    # libvirt prints every error to stderr by default; modules report them instead.
    with contextlib.suppress(AttributeError):
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def connect(uri=DEFAULT_URI):
    """Open a read-write connection to ``uri`` or raise LibvirtModuleError."""
    _silence_default_error_handler()
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise LibvirtModuleError("Cannot connect to the hypervisor at %s: %s" % (uri, error_message(exc))) from exc


def is_local_uri(uri):
    """True for a URI that reaches a libvirtd of this machine over its local
    socket (``qemu:///system``, ``qemu+unix:///system``): paths it reports are
    paths of this host."""
    scheme, _sep, rest = uri.partition("://")
    return rest.startswith("/") and ("+" not in scheme or scheme.endswith("+unix"))


def call_with_connection(uri, work):
    """Run ``work(conn)`` on a connection to ``uri``, then close it.

    Returns ``(result, None)``, or ``(None, sentence)`` when a
    LibvirtModuleError or a libvirt error stopped the work: the thin main() of
    a module turns that into ``exit_json`` or ``fail_json``.
    """
    conn = None
    try:
        conn = connect(uri)
        return work(conn), None
    except LibvirtModuleError as exc:
        return None, str(exc)
    except libvirt.libvirtError as exc:
        return None, "libvirt failed: %s" % error_message(exc)
    finally:
        if conn is not None:
            conn.close()


class ModuleManager:
    """The common part of a module's manager: read the current state, compare it
    with the task, apply the difference (docs/architecture.md shows the shape).

    Holds the module, the connection and the task's parameters, a
    DifferenceTracker-style ``tracker`` (given by the subclass), what was done
    (``actions``, ``changed``) and ``warnings`` for :func:`run_manager` to pass on.
    A subclass implements ``run()`` and returns the module's result.
    """

    def __init__(self, module, conn):
        self.module = module
        self.conn = conn
        self.params = module.params
        self.name = module.params.get("name")
        self.check = module.check_mode
        self.actions = []
        self.changed = False
        self.warnings = []
        self.refusal = None

    def call(self, what, function, *args):
        """Run ``function(*args)``, a libvirt call; its error becomes the sentence
        "Cannot <what>: <libvirt's message>" (``what`` names the object, e.g.
        ``"start network lab"``)."""
        return call(what, function, *args)

    def act(self, action):
        """Record ``action``: in check mode a prediction, in a real run something
        done (record it after it succeeded, as :meth:`do` does)."""
        self.actions.append(action)
        self.changed = True

    def do(self, action, what, function, *args):
        """Make one change: in a real run call ``function(*args)`` through
        :meth:`call`, then record ``action``; check mode only records it.

        Recording after success keeps ``actions`` to what was really done when
        a later step fails (the failure then reports ``changed: true`` and them).
        """
        if self.check:
            self.act(action)
            return None
        result = call(what, function, *args)
        self.act(action)
        return result

    def refuse(self, message, actions=None, **extra):
        """Refuse the task before anything is changed, because it needs more
        input (``force``, a stopped guest, other options).

        The module then fails with ``message``, ``changed: false``, ``actions``
        saying what the task would do (default: what was predicted so far) and
        ``extra`` (e.g. ``restart_required=True``), in check mode and in a real
        run alike. Call it before the first change: a refusal changes nothing.
        """
        self.refusal = dict(extra, actions=list(self.actions if actions is None else actions))
        raise LibvirtModuleError(message)

    def run(self):
        raise NotImplementedError


def call(what, function, *args):
    """Run ``function(*args)``; a libvirt error becomes LibvirtModuleError
    "Cannot <what>: <libvirt's message>". The one wrapper of libvirt calls:
    managers use it as ``self.call``, module_utils helpers directly."""
    try:
        return function(*args)
    except libvirt.libvirtError as exc:
        raise LibvirtModuleError("Cannot %s: %s" % (what, error_message(exc))) from exc


def run_manager(module, manager_class):
    """Run ``manager_class(module, conn).run()`` on a connection to ``module.params['uri']``.

    Returns ``(manager, result, error)``: the manager (None when no connection
    was made), what ``run()`` returned, and the one-sentence error or None. The
    manager's warnings go to ``module.warn``.
    """
    made = []

    def work(conn):
        made.append(manager_class(module, conn))
        return made[0].run()

    result, error = call_with_connection(module.params["uri"], work)
    manager = made[0] if made else None
    for warning in getattr(manager, "warnings", None) or []:
        module.warn(warning)
    return manager, result, error


def failure_result(module, manager):
    """What a failed run returns besides ``msg``.

    A refusal (:meth:`ModuleManager.refuse`) changed nothing: ``changed: false``
    and the actions the task would do. Any other failure says what was done
    before it: ``changed: true`` and those actions when a real run had changed
    something, else ``changed: false``.
    """
    if manager is None:
        return dict(changed=False, actions=[])
    done = bool(manager.changed and not module.check_mode)
    if manager.refusal is not None and not done:
        return dict(manager.refusal, changed=False)
    return dict(changed=done, actions=list(manager.actions))


def exit_module(module, manager, result, error):
    """End a module that :func:`run_manager` ran: ``fail_json`` with the error
    and :func:`failure_result`, else ``exit_json`` with the result."""
    if error:
        module.fail_json(msg=error, **failure_result(module, manager))
    module.exit_json(**result)


def error_message(exc):
    """Return libvirt's message for ``exc`` as one sentence."""
    msg = None
    if libvirt is not None and isinstance(exc, libvirt.libvirtError):
        msg = exc.get_error_message()
    if not msg:
        msg = str(exc)
    msg = " ".join(str(msg).split())
    if msg and msg[-1] not in ".!?":
        msg += "."
    return msg


def error_code(exc):
    if libvirt is not None and isinstance(exc, libvirt.libvirtError):
        return exc.get_error_code()
    return None


def is_not_found(exc):
    """True when ``exc`` says the object does not exist."""
    code = error_code(exc)
    return code in (
        getattr(libvirt, "VIR_ERR_NO_DOMAIN", -1),
        getattr(libvirt, "VIR_ERR_NO_NETWORK", -1),
        getattr(libvirt, "VIR_ERR_NO_STORAGE_POOL", -1),
        getattr(libvirt, "VIR_ERR_NO_STORAGE_VOL", -1),
        getattr(libvirt, "VIR_ERR_NO_NODE_DEVICE", -1),
    )


def lookup(lookup_function, name):
    """Call ``lookup_function(name)``; return None when the object does not exist."""
    try:
        return lookup_function(name)
    except libvirt.libvirtError as exc:
        if is_not_found(exc):
            return None
        raise


def parse_xml(text):
    """Parse XML text from libvirt (or a user) into an lxml element."""
    parser = etree.XMLParser(remove_blank_text=True, resolve_entities=False, no_network=True)
    if isinstance(text, str):
        text = text.encode("utf-8")
    return etree.fromstring(text, parser)


def to_xml(element):
    """Serialise an lxml element as indented text."""
    return etree.tostring(element, pretty_print=True, encoding="unicode")


# ---------------------------------------------------------------------------
# Who uses what: answers that the storage, network, GPU and VM modules share.
# ---------------------------------------------------------------------------


def all_domains(conn):
    """Every domain, defined or transient."""
    return conn.listAllDomains(0)


def domain_is_running(dom):
    """True when the domain has a QEMU process (running, paused, ...)."""
    return dom.isActive() == 1


def _domain_tree(dom, inactive=False):
    flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
    return parse_xml(dom.XMLDesc(flags))


def _domain_trees(dom):
    """The live and the persistent definitions (either may be missing)."""
    trees = []
    if dom.isActive():
        trees.append(_domain_tree(dom))
    if dom.isPersistent():
        trees.append(_domain_tree(dom, inactive=True))
    return trees


def domains_with_trees(conn, running_only, live_only):
    """``(name, trees)`` of the domains (only running ones with ``running_only``);
    ``trees`` holds the live definition only with ``live_only``, else the live and
    the persistent ones.

    A domain that disappears while it is read (another client removed it) is
    skipped: it uses nothing any more.
    """
    for dom in all_domains(conn):
        try:
            if running_only and not domain_is_running(dom):
                continue
            trees = [_domain_tree(dom)] if live_only else _domain_trees(dom)
            yield dom.name(), trees
        except libvirt.libvirtError as exc:
            if not is_not_found(exc):
                raise


def domain_disk_sources(tree):
    """Return (path, pool, volume) tuples for every disk of a domain tree."""
    result = []
    for source in tree.findall("./devices/disk/source"):
        result.append((source.get("file") or source.get("dev"), source.get("pool"), source.get("volume")))
    return result


def domains_using_volume(conn, path, pool=None, volume=None, running_only=False):
    """Names of the domains whose disks point at ``path`` (or pool/volume)."""
    users = []
    for name, trees in domains_with_trees(conn, running_only, live_only=False):
        for tree in trees:
            hit = False
            for src_path, src_pool, src_volume in domain_disk_sources(tree):
                if (path and src_path == path) or (pool and volume and src_pool == pool and src_volume == volume):
                    hit = True
            if hit:
                users.append(name)
                break
    return sorted(set(users))


def domains_using_network(conn, network, running_only=True):
    """Names of the domains with an interface on libvirt network ``network``."""
    users = []
    for name, trees in domains_with_trees(conn, running_only, live_only=running_only):
        for tree in trees:
            names = [s.get("network") for s in tree.findall("./devices/interface/source")]
            if network in names:
                users.append(name)
                break
    return sorted(set(users))


def domains_using_pci(conn, address, running_only=True):
    """Names of the domains with a PCI hostdev at ``address`` (``dddd:bb:ss.f``)."""
    wanted = normalise_pci_address(address)
    users = []
    for name, trees in domains_with_trees(conn, running_only, live_only=running_only):
        for tree in trees:
            for hostdev in tree.findall("./devices/hostdev[@type='pci']"):
                if hostdev_address(hostdev) == wanted:
                    users.append(name)
    return sorted(set(users))


def hostdev_address(hostdev):
    """``0000:01:00.0`` of a ``<hostdev type='pci'>``'s host source, or None."""
    addr = hostdev.find("./source/address")
    if addr is None:
        return None
    try:
        return "%04x:%02x:%02x.%x" % (
            int(addr.get("domain", "0"), 0),
            int(addr.get("bus"), 0),
            int(addr.get("slot"), 0),
            int(addr.get("function", "0"), 0),
        )
    except (TypeError, ValueError):
        return None


_PCI_RE = re.compile(
    r"^(?:(?P<domain>[0-9a-f]{1,4}):)?(?P<bus>[0-9a-f]{1,2}):(?P<slot>[0-9a-f]{1,2})\.(?P<function>[0-7])$"
)


def normalise_pci_address(address):
    """``0000:01:00.0`` form of a PCI address given as ``01:00.0`` or ``0000:01:00.0``.

    Raises ValueError with a sentence when ``address`` is not a PCI address.
    """
    match = _PCI_RE.match(str(address).strip().lower())
    if not match or int(match.group("slot"), 16) > 0x1F:
        raise ValueError("%r is not a PCI address such as 0000:01:00.0." % (address,))
    return "%04x:%02x:%02x.%x" % (
        int(match.group("domain") or "0", 16),
        int(match.group("bus"), 16),
        int(match.group("slot"), 16),
        int(match.group("function"), 16),
    )
