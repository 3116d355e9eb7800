# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The common part of the modules that change host devices through sysfs
(kvm_gpu_passthrough, kvm_sriov, kvm_vgpu).

Each runs as plan, refuse, apply:

- the plan holds every write (a sysfs attribute or a configuration file) with
  the action it belongs to, and every command, before anything is written;
- a refusal (:class:`Refusal`) ends the run before the first write, so the
  module fails with ``changed: false`` and the ``actions`` it would have done;
- :meth:`HostDeviceManager.write` and :meth:`HostDeviceManager.run_command` record
  what was done as it happens, so a failure halfway returns ``changed: true``
  and the actions done so far.

libvirt is asked only which guests use the devices a change would touch, on a
connection opened when the first such question comes (a run that changes
nothing needs no libvirtd).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.iaas.kvm.plugins.module_utils._files import read_text, write_file
from ansible_collections.iaas.kvm.plugins.module_utils._libvirt import (
    LibvirtModuleError,
    ModuleManager,
    connect,
    domains_using_pci,
)
from ansible_collections.iaas.kvm.plugins.module_utils._sysfs import SysfsError, sysfs_from_params


def in_use_refusal(what, device, users):
    """The sentence that refuses to ``what`` a ``device`` that the running guests ``users`` use."""
    return "Refusing to %s %s: the running guest(s) %s use it; stop them first." % (what, device, ", ".join(users))


class HostDeviceError(Exception):
    """A request the module cannot carry out, as a sentence."""


class Refusal(Exception):
    """Every reason a request is refused; raised before anything is written."""

    def __init__(self, reasons):
        self.reasons = list(reasons)
        more = " (%d more reasons in refusals)" % (len(self.reasons) - 1) if len(self.reasons) > 1 else ""
        super().__init__(self.reasons[0] + more)


class HostDeviceManager(ModuleManager):
    """A ModuleManager over sysfs: ``planned`` actions, ``writes`` and ``commands`` as done, the
    sysfs ``steps`` of the plan and the one configuration ``file`` the module keeps (or None).

    A subclass implements ``plan()`` (read the host, fill ``steps``, ``file`` and ``commands``),
    ``refuse()`` (raise Refusal before anything is written), ``apply()`` and ``result()``."""

    def __init__(self, module):
        super().__init__(module, None)
        self.root = self.params["root"]
        self.sysfs = sysfs_from_params(self.params)
        self.planned = []
        self.writes = []
        self.commands = []
        self.steps = []
        self.file = None  # path, before, after (None: no file)

    def run(self):
        self.plan_all()
        self.refuse()
        if self.check:
            self.predicted()
        else:
            self.apply()
        return self.result()

    def plan_all(self):
        raise NotImplementedError

    def refuse(self):
        raise NotImplementedError

    def apply(self):
        raise NotImplementedError

    def result(self):
        raise NotImplementedError

    # -- libvirt, only when a change needs it ---------------------------------------

    def connection(self):
        if self.conn is None:
            self.conn = connect(self.params["uri"])
        return self.conn

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def pci_users(self, addresses):
        """``({address: [running guests]}, None)``, or ``(None, sentence)`` when libvirt cannot be asked."""
        try:
            conn = self.connection()
            users = {
                a: self.call("ask libvirt which running guests use %s" % a, domains_using_pci, conn, a)
                for a in addresses
            }
        except LibvirtModuleError as exc:
            return None, str(exc)
        return users, None

    def users_refusals(self, addresses, what):
        """Refusals for ``addresses`` that running guests use (or that libvirt cannot tell about)."""
        if not addresses:
            return []
        users, error = self.pci_users(addresses)
        if error:
            return [
                "Cannot tell whether a running guest uses %s, so nothing was changed: %s"
                % (", ".join(addresses), error)
            ]
        return [in_use_refusal(what, a, users[a]) for a in addresses if users.get(a)]

    # -- the plan and what was done --------------------------------------------------

    def plan(self, action):
        if action not in self.planned:
            self.planned.append(action)

    def plan_steps(self, steps):
        self.steps.extend(steps)
        for step in steps:
            self.plan(step["action"])

    def plan_file(self, path, after):
        """The configuration file at ``path`` with the text ``after`` (None: no file)."""
        self.file = dict(path=path, before=read_text(path), after=after)
        if self.file_changed:
            self.plan(self._file_action())

    @property
    def file_changed(self):
        return self.file is not None and self.file["before"] != self.file["after"]

    def _file_action(self):
        return "%s %s" % ("remove" if self.file["after"] is None else "write", self.file["path"])

    def apply_file(self):
        if self.file_changed:
            write_file(self.file["path"], self.file["after"])
            self.writes.append(dict(path=self.file["path"], value=self.file["after"]))
            self.did(self._file_action())

    def did(self, action):
        if action and action not in self.actions:
            self.act(action)

    def write(self, path, value, action):
        """Write ``value`` to a sysfs attribute, recording it (and its action) once it happened."""
        self.sysfs.write(path, value)
        self.writes.append(dict(path=path, value=value))
        self.did(action)

    def run_command(self, command, action):
        """Run ``command['cmd']``; HostDeviceError when it fails."""
        rc, out, err = self.module.run_command(command["cmd"])
        if rc != 0:
            raise HostDeviceError(
                "%s failed (exit code %d): %s" % (" ".join(command["cmd"]), rc, (err or out).strip() or "no output")
            )
        command["ran"] = True
        self.did(action)

    def predicted(self):
        """Check mode: the planned actions and writes stand for what a real run does."""
        for action in self.planned:
            self.act(action)
        self.writes = [dict(path=s["path"], value=s["value"]) for s in self.steps]
        if self.file_changed:
            self.writes.append(dict(path=self.file["path"], value=self.file["after"]))

    def finish(self, result, diff):
        """``result`` with what every such module returns (and the diff in diff mode)."""
        if self.file is not None:
            diff.add(self.file["path"], self.file["before"], self.file["after"])
        result.update(
            changed=self.changed,
            actions=self.actions,
            writes=self.writes,
            commands=self.commands,
            persistent_file=self.file["path"] if self.file else None,
        )
        if self.module._diff:
            result["diff"] = diff.diff()
        return result


def run_host_module(module, manager_class):
    """Run ``manager_class(module).run()`` and end the module: a refusal fails with
    ``changed: false`` and the planned actions; any other failure with what was done."""
    manager = manager_class(module)
    try:
        result = manager.run()
    except Refusal as exc:
        manager.close()
        module.fail_json(
            msg=str(exc),
            refusals=exc.reasons,
            changed=False,
            actions=manager.planned,
            writes=[],
            commands=[dict(c, ran=False) for c in manager.commands],
        )
    except (HostDeviceError, SysfsError, LibvirtModuleError, OSError) as exc:
        manager.close()
        message = str(exc)
        if isinstance(exc, OSError) and not isinstance(exc, SysfsError):
            message = "Writing %s failed: %s." % (exc.filename or "a configuration file", exc.strerror or exc)
        module.fail_json(
            msg=message,
            changed=bool(manager.actions) and not module.check_mode,
            actions=manager.actions if not module.check_mode else [],
            writes=manager.writes if not module.check_mode else [],
            commands=manager.commands,
        )
    manager.close()
    for warning in manager.warnings:
        module.warn(warning)
    module.exit_json(**result)
