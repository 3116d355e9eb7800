# -*- coding: utf-8 -*-
"""A fake host for the GPU modules and the gpu_host role: a sysfs tree, /proc
and /etc below one root directory, and a tiny fake kernel behind the files that
bind and unbind drivers.

The tree has the kernel's shape: device directories under
``sys/devices/pci0000:00`` (nested under their bridge where one is given),
``sys/bus/pci/devices/<address>`` links to them, ``driver`` and
``iommu_group`` links, ``sys/kernel/iommu_groups/<n>/devices`` links, and
``sys/bus/pci/drivers/<driver>/{bind,unbind,module}``. The write-only kernel
files (``bind``, ``unbind``, ``drivers_probe``, each device's ``reset`` and
``remove``) are FIFOs read by a thread, the fake kernel, which applies the
kernel's rules when a line is written to them:

- ``drivers/<d>/bind``: the device must exist, have no driver, and match the
  driver: through ``driver_override`` when that is set (then only that
  driver), otherwise through the driver's ID table; vfio-pci has none, so
  binding it without ``driver_override`` fails (EBUSY / ENODEV in a real kernel);
- ``drivers/<d>/unbind``: the device must be bound to ``<d>`` (ENODEV otherwise);
- ``drivers_probe``: a device without a driver gets the matching one (the
  override, or the first driver whose ID table matches); a bound device stays;
- ``reset`` and ``remove``: never written by the modules, so any write is a violation;
- ``mdev_supported_types/<type>/create`` (a UUID) creates a mediated device under
  its parent, linked from ``/sys/bus/mdev/devices``, while the type has an
  instance left (the same UUID twice, or an unknown one, is refused); its
  ``remove`` (``1``) removes it again. A parent offers every type while it has no
  mediated device, then only the type it already has (NVIDIA's time-sliced vGPU).

Some kernel attributes are read and written (a FIFO could not be read back); the
fake kernel polls them and answers a change as the kernel does:

- ``sriov_numvfs`` of an SR-IOV physical function: a count above
  ``sriov_totalvfs`` (ERANGE), a PF without a driver (ENOENT) or a new non-zero
  count while VFs are enabled (EBUSY: it must go to 0 first) is refused;
  otherwise the VFs appear (at ``sriov_offset``/``sriov_stride`` from the PF, each
  with ``physfn`` and the PF's ``virtfn<N>`` link, its own IOMMU group, and the
  matching driver unless the PF's ``sriov_drivers_autoprobe`` is 0) or disappear;
- ``nvidia/current_vgpu_type`` of an NVIDIA VF: a type not in its
  ``nvidia/creatable_vgpu_types`` (EINVAL) or a new type over another one
  (EBUSY: 0 first) is refused; the VFs of one GPU offer the types that fit in
  the frame buffer the GPU's other vGPUs leave (NVIDIA's mixed-size mode).

A write the kernel would refuse changes nothing (a polled attribute gets its
old value back) and is recorded in ``violations`` (a real kernel returns an
error; a FIFO cannot), so a careless module sees its change not happen, fails,
and the test sees why. Every accepted operation is recorded in ``events``.
``driver_override`` is a plain file, as readable and writable as the kernel's
(``(null)`` when unset).

The FIFOs work across processes, so ``ansible-playbook`` runs against the same
fake host as an in-process module run. Start the kernel (``with host:``) before
anything writes to the tree: a FIFO without its reader blocks the writer.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import stat
import threading
import time
from pathlib import Path

IORESOURCE_MEM = 0x200
IORESOURCE_PREFETCH = 0x2000
IORESOURCE_MEM_64 = 0x100000

KIB, MIB, GIB = 1024, 1024**2, 1024**3

# Classes (24-bit) of the devices the scenarios use.
VGA = 0x030000
GPU_3D = 0x030200
AUDIO = 0x040300
USB_XHCI = 0x0C0330
SERIAL_BUS = 0x0C8000  # NVIDIA's USB Type-C UCSI function
PCI_BRIDGE = 0x060400
OTHER_BRIDGE = 0x068000  # NVSwitch
NVME = 0x010802
ETHERNET = 0x020000

NVIDIA = "10de"
INTEL = "8086"
KERNEL_RELEASE = "6.1.0-18-amd64"
# How often the fake kernel looks at the attributes it polls.
POLL_SECONDS = 0.002
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
VGPU_HEADER = "ID    : vGPU Name"


class FakeHost:
    """A fake host below ``root``; ``with host:`` runs its kernel."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.sys = self.root / "sys"
        self.events: list[tuple] = []
        self.violations: list[str] = []
        self._drivers: dict[str, list[tuple]] = {}
        self._sriov: dict[str, dict] = {}  # PF address: how its VFs look
        self._vgpu_types: dict[str, dict] = {}  # PF address: {type id: (name, instances)}
        self._mdev_parents: dict[str, dict] = {}  # parent address: {type: (name, instances)}
        self._watched: dict[str, tuple] = {}  # polled attribute: (handler, last content)
        self._next_group = 1000
        self._thread = None
        self._fifos: dict[int, str] = {}
        self._poller = None
        self._stop_r = self._stop_w = None
        self._lock = threading.Lock()
        for directory in (
            "sys/bus/pci/devices",
            "sys/bus/pci/drivers",
            "sys/devices/pci0000:00",
            "sys/kernel/iommu_groups",
            "sys/class/iommu",
            "sys/module",
            "proc/sys/kernel",
            "etc/default",
            "etc/modprobe.d",
            "etc/modules-load.d",
        ):
            (self.root / directory).mkdir(parents=True, exist_ok=True)
        self._fifo(self.sys / "bus/pci/drivers_probe")
        (self.root / "proc/sys/kernel/osrelease").write_text(KERNEL_RELEASE + "\n")
        self.set_cmdline("BOOT_IMAGE=/boot/vmlinuz-%s root=UUID=0b1c ro quiet" % KERNEL_RELEASE)
        self.set_cpu_vendor("GenuineIntel")

    # -- building ---------------------------------------------------------------

    def _fifo(self, path: Path):
        """A write-only kernel file; one the kernel makes while it runs is served at once."""
        os.mkfifo(path, 0o200)
        if self._thread is not None:
            assert threading.current_thread() is self._thread, "build the fake host before starting its kernel"
            fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
            self._fifos[fd] = str(path)
            self._poller.register(fd, select.POLLIN)

    def _watch(self, path: Path, handler):
        """A read-write kernel attribute the fake kernel polls; ``handler(path, old, new)`` accepts a change."""
        self._watched[str(path)] = (handler, path.read_text().strip())

    def break_attribute(self, address: str, name: str):
        """Make every write to a device's attribute fail (EISDIR), as a kernel that refuses it would."""
        path = self.device_dir(address) / name
        path.unlink()
        path.mkdir()

    def set_nodes(self, cpus: dict):
        """The host's NUMA nodes: ``{node: cpu list}`` in /sys/devices/system/node."""
        base = self.sys / "devices/system/node"
        for node, cpulist in cpus.items():
            (base / ("node%d" % node)).mkdir(parents=True, exist_ok=True)
            (base / ("node%d" % node) / "cpulist").write_text(cpulist + "\n")

    def set_cmdline(self, text: str):
        (self.root / "proc/cmdline").write_text(text + "\n")

    def set_cpu_vendor(self, vendor: str, phys_bits: int = 46):
        (self.root / "proc/cpuinfo").write_text(
            "processor\t: 0\nvendor_id\t: %s\nmodel name\t: fake CPU\naddress sizes\t: %d bits physical, 57 bits virtual"
            "\n\nprocessor\t: 1\nvendor_id\t: %s\naddress sizes\t: %d bits physical, 57 bits virtual\n"
            % (vendor, phys_bits, vendor, phys_bits)
        )

    def add_module_aliases(self, text: str):
        """The running kernel's modules.alias (``alias <modalias pattern> <module>`` lines)."""
        directory = self.root / "lib/modules" / KERNEL_RELEASE
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "modules.alias").write_text(text)

    def iommu_on(self, units=("dmar0",)):
        """IOMMU units in /sys/class/iommu; groups appear with the devices that name one."""
        for unit in units:
            (self.sys / "class/iommu" / unit).mkdir(exist_ok=True)

    def add_driver(self, name: str, ids=(), module: str | None = None):
        """A loaded driver. ``ids``: (vendor or None, device or None, 16-bit class or None) tuples;
        ``module``: its kernel module (None: built in)."""
        directory = self.sys / "bus/pci/drivers" / name
        directory.mkdir()
        self._fifo(directory / "bind")
        self._fifo(directory / "unbind")
        if module:
            (self.sys / "module" / module).mkdir(exist_ok=True)
            os.symlink(os.path.relpath(self.sys / "module" / module, directory), directory / "module")
        self._drivers[name] = list(ids)

    def add_hugepages(self, node: int, size_kib: int, total: int, free: int):
        """Huge pages of one size on NUMA node ``node``, as /sys/devices/system/node shows them."""
        directory = self.sys / "devices/system/node" / ("node%d" % node) / "hugepages" / ("hugepages-%dkB" % size_kib)
        directory.mkdir(parents=True, exist_ok=True)
        for name, value in (("nr_hugepages", total), ("free_hugepages", free), ("surplus_hugepages", 0)):
            (directory / name).write_text("%d\n" % value)

    def add_device(
        self,
        address: str,
        vendor: str,
        device: str,
        pci_class: int,
        driver: str | None = None,
        group: int | None = None,
        numa_node: int = -1,
        bars=(),
        boot_vga: bool | None = None,
        parent: str | None = None,
        sriov_total: int | None = None,
        sriov_num: int = 0,
        physfn: str | None = None,
        reset_methods: str | None = "flr bus",
        local_cpus: str = "0-7",
        subsystem=("0000", "0000"),
        mdev_types=None,
        vf=None,
        vgpu_types=None,
    ):
        """One PCI function. ``bars``: (index, size, is_64bit, prefetchable) tuples.

        An SR-IOV physical function (``sriov_total``) takes ``vf``: how its VFs look
        (``device``, ``pci_class``, ``bars``, ``offset``, ``stride``, ``group`` of the
        first VF, ``vgpu_memory``: the frame buffer in GiB its vGPUs share) and
        ``vgpu_types`` (``{type id: (name, frame buffer GiB)}``) the NVIDIA vGPU types
        its VFs offer; ``sriov_num`` VFs are enabled from the start.
        ``mdev_types``: ``{type: (name, instances)}`` of a mediated-device parent.
        """
        base = self.device_dir(parent) if parent else self.sys / "devices/pci0000:00"
        path = base / address
        path.mkdir()
        files = {
            "vendor": "0x%s" % vendor,
            "device": "0x%s" % device,
            "class": "0x%06x" % pci_class,
            "subsystem_vendor": "0x%s" % subsystem[0],
            "subsystem_device": "0x%s" % subsystem[1],
            "numa_node": str(numa_node),
            "local_cpulist": local_cpus,
            "driver_override": "(null)",
            "resource": self._resource(bars),
            "enable": "1",
            "irq": "16",
            "modalias": "pci:v%08Xd%08Xsv%08Xsd%08Xbc%02Xsc%02Xi%02X"
            % (
                int(vendor, 16),
                int(device, 16),
                int(subsystem[0], 16),
                int(subsystem[1], 16),
                pci_class >> 16,
                (pci_class >> 8) & 0xFF,
                pci_class & 0xFF,
            ),
        }
        if boot_vga is not None:
            files["boot_vga"] = "1" if boot_vga else "0"
        if reset_methods is not None:
            files["reset_method"] = reset_methods
        if sriov_total is not None:
            vf = dict(
                dict(device=device, pci_class=pci_class, bars=(), offset=4, stride=1, group=200, vgpu_memory=0),
                **(vf or {}),
            )
            files.update(
                sriov_totalvfs=str(sriov_total),
                sriov_numvfs="0",
                sriov_offset=str(vf["offset"]),
                sriov_stride=str(vf["stride"]),
                sriov_vf_device=vf["device"],
                sriov_drivers_autoprobe="1",
            )
        for name, text in files.items():
            (path / name).write_text(text + "\n")
        for name in ("reset", "remove"):
            self._fifo(path / name)
        for mdev_type, (mdev_name, available) in (mdev_types or {}).items():
            type_dir = path / "mdev_supported_types" / mdev_type
            (type_dir / "devices").mkdir(parents=True)
            (type_dir / "name").write_text(mdev_name + "\n")
            (type_dir / "available_instances").write_text("%d\n" % available)
            (type_dir / "device_api").write_text("vfio-pci\n")
            self._fifo(type_dir / "create")
        if mdev_types:
            self._mdev_parents[address] = dict(mdev_types)
        os.symlink(os.path.relpath(path, self.sys / "bus/pci/devices"), self.sys / "bus/pci/devices" / address)
        if physfn:
            os.symlink(os.path.relpath(self.device_dir(physfn), path), path / "physfn")
        if group is not None:
            self._join_group(path, address, group)
        if driver:
            assert driver in self._drivers, "add the driver %s first" % driver
            self._link_driver(address, driver)
        if sriov_total is not None:
            self._sriov[address] = dict(
                vf, vendor=vendor, total=sriov_total, numa_node=numa_node, local_cpus=local_cpus, parent=parent
            )
            self._vgpu_types[address] = dict(vgpu_types or {})
            self._watch(path / "sriov_numvfs", self._numvfs_changed)
            if sriov_num:
                self._enable_vfs(address, sriov_num)
                (path / "sriov_numvfs").write_text("%d\n" % sriov_num)
                self._watch(path / "sriov_numvfs", self._numvfs_changed)

    def _join_group(self, path, address, group):
        group_dir = self.sys / "kernel/iommu_groups" / str(group)
        (group_dir / "devices").mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(group_dir, path), path / "iommu_group")
        os.symlink(os.path.relpath(path, group_dir / "devices"), group_dir / "devices" / address)

    @staticmethod
    def _resource(bars):
        lines = [(0, 0, 0)] * 7
        start = 0x38000000000
        for index, size, is_64bit, prefetchable in bars:
            flags = (
                IORESOURCE_MEM | (IORESOURCE_MEM_64 if is_64bit else 0) | (IORESOURCE_PREFETCH if prefetchable else 0)
            )
            lines[index] = (start, start + size - 1, flags)
            start += size
        return "\n".join("0x%016x 0x%016x 0x%016x" % line for line in lines)

    def device_dir(self, address: str) -> Path:
        return (self.sys / "bus/pci/devices" / address).resolve()

    # -- state ------------------------------------------------------------------

    def driver_of(self, address: str) -> str | None:
        link = self.device_dir(address) / "driver"
        return os.path.basename(os.readlink(link)) if os.path.islink(link) else None

    def override_of(self, address: str) -> str | None:
        text = (self.device_dir(address) / "driver_override").read_text().strip()
        return None if text in ("", "(null)") else text

    def bindings(self) -> dict[str, str | None]:
        return {a: self.driver_of(a) for a in sorted(os.listdir(self.sys / "bus/pci/devices"))}

    def vfs_of(self, pf: str) -> list[str]:
        """The VFs the kernel enabled on ``pf`` (its ``virtfn<N>`` links), in VF order."""
        directory = self.device_dir(pf)
        links = sorted((int(n[6:]), n) for n in os.listdir(directory) if n.startswith("virtfn"))
        return [os.path.basename(os.readlink(directory / name)) for _index, name in links]

    def numvfs_of(self, pf: str) -> int:
        return int((self.device_dir(pf) / "sriov_numvfs").read_text())

    def vgpu_type_of(self, vf: str) -> str:
        return (self.device_dir(vf) / "nvidia/current_vgpu_type").read_text().strip()

    def wait_quiet(self, seconds: float = 10):
        """Wait until the fake kernel has answered every change of the attributes it polls and
        finished the write it is handling (it holds the lock while it does)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with self._lock:
                if all(Path(p).read_text().strip() in (old, "") for p, (_h, old) in self._watched.items()):
                    return
            time.sleep(POLL_SECONDS)
        raise AssertionError("the fake kernel did not answer within %ss" % seconds)

    def mdevs(self) -> dict[str, tuple]:
        """``{uuid: (parent, type)}`` of the mediated devices."""
        base = self.sys / "bus/mdev/devices"
        result = {}
        for uuid in sorted(os.listdir(base)) if base.exists() else []:
            real = (base / uuid).resolve()
            result[uuid] = (real.parent.name, os.path.basename(os.readlink(real / "mdev_type")))
        return result

    def snapshot(self) -> dict[str, tuple]:
        """Every file's content, link's target and FIFO below the root: equal snapshots, nothing written."""
        result = {}
        for directory, dirs, files in os.walk(self.root):
            for name in dirs + files:
                path = os.path.join(directory, name)
                relative = os.path.relpath(path, self.root)
                mode = os.lstat(path).st_mode
                if stat.S_ISLNK(mode):
                    result[relative] = ("link", os.readlink(path))
                elif stat.S_ISFIFO(mode):
                    result[relative] = ("fifo",)
                elif stat.S_ISDIR(mode):
                    result[relative] = ("dir",)
                else:
                    with open(path, "rb") as handle:
                        result[relative] = ("file", handle.read(), oct(stat.S_IMODE(mode)))
        return result

    # -- the fake kernel ------------------------------------------------------------

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        self._fifos = {}
        self._poller = select.poll()
        for directory, _dirs, files in os.walk(self.sys):
            for name in files:
                path = os.path.join(directory, name)
                if stat.S_ISFIFO(os.lstat(path).st_mode):
                    # O_RDWR: the kernel end never sees end-of-file between writers.
                    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
                    self._fifos[fd] = path
                    self._poller.register(fd, select.POLLIN)
        self._stop_r, self._stop_w = os.pipe()
        self._poller.register(self._stop_r, select.POLLIN)
        self._thread = threading.Thread(target=self._serve, daemon=True, name="fake-kernel")
        self._thread.start()

    def stop(self):
        if self._thread is None:
            return
        os.write(self._stop_w, b"x")
        self._thread.join(10)
        os.close(self._stop_r)
        os.close(self._stop_w)
        self._thread = None

    def _serve(self):
        try:
            while True:
                for fd, _event in self._poller.poll(POLL_SECONDS * 1000 if self._watched else None):
                    if fd == self._stop_r:
                        return
                    if fd not in self._fifos:
                        continue
                    try:
                        data = os.read(fd, 65536)
                    except (BlockingIOError, OSError):
                        continue
                    for line in data.decode("utf-8", "replace").split("\n"):
                        if line.strip():
                            with self._lock:
                                self._handle(self._fifos[fd], line.strip())
                with self._lock:
                    self._poll_attributes()
        finally:
            for fd in self._fifos:
                os.close(fd)

    def _drop_fifos(self, directory):
        """Stop serving the FIFOs below ``directory`` (a device the kernel removes)."""
        prefix = str(directory) + os.sep
        for fd, path in list(self._fifos.items()):
            if path.startswith(prefix):
                self._poller.unregister(fd)
                os.close(fd)
                del self._fifos[fd]
        for path in [p for p in self._watched if p.startswith(prefix)]:
            del self._watched[path]

    def _poll_attributes(self):
        for path, (handler, old) in list(self._watched.items()):
            try:
                new = Path(path).read_text().strip()
            except OSError:
                continue
            if new in (old, ""):  # unchanged, or a write half done
                continue
            if handler(path, old, new):
                # The value handled, not the file's content now: a writer may already have written the next.
                if path in self._watched:
                    self._watched[path] = (handler, new)
            else:
                Path(path).write_text(old + "\n")

    def _handle(self, path, value):
        relative = os.path.relpath(path, self.sys)
        parts = relative.split(os.sep)
        if relative == os.path.join("bus", "pci", "drivers_probe"):
            self._probe(value)
        elif parts[:3] == ["bus", "pci", "drivers"] and parts[4] == "bind":
            self._bind(parts[3], value)
        elif parts[:3] == ["bus", "pci", "drivers"] and parts[4] == "unbind":
            self._unbind(parts[3], value)
        elif parts[-1] == "create" and parts[-3] == "mdev_supported_types":
            self._mdev_create(Path(path).parent, value)
        elif parts[-1] == "remove" and os.path.lexists(Path(path).parent / "mdev_type"):
            self._mdev_remove(Path(path).parent, value)
        else:
            self.violations.append(
                "%r written to %s: the modules must never reset or remove a device" % (value, relative)
            )

    def _exists(self, address):
        return os.path.lexists(self.sys / "bus/pci/devices" / address)

    def _matches(self, driver, address):
        override = self.override_of(address)
        if override is not None:
            return override == driver
        directory = self.device_dir(address)
        vendor = (directory / "vendor").read_text().strip()[2:]
        device = (directory / "device").read_text().strip()[2:]
        pci_class = int((directory / "class").read_text(), 16) >> 8
        for id_vendor, id_device, id_class in self._drivers[driver]:
            if id_vendor not in (None, vendor) or id_device not in (None, device):
                continue
            if id_class is not None and id_class != pci_class:
                continue
            return True
        return False

    def _bind(self, driver, address):
        if not self._exists(address):
            self.violations.append("bind %s to %s: no such device (ENODEV)" % (address, driver))
        elif self.driver_of(address) is not None:
            self.violations.append(
                "bind %s to %s: it is bound to %s already (EBUSY)" % (address, driver, self.driver_of(address))
            )
        elif not self._matches(driver, address):
            self.violations.append(
                "bind %s to %s: the driver does not match the device (driver_override %s) (ENODEV)"
                % (address, driver, self.override_of(address))
            )
        else:
            # Recorded before the change is visible: a module that saw it has its event counted.
            self.events.append(("bind", address, driver))
            self._link_driver(address, driver)

    def _unbind(self, driver, address):
        current = self.driver_of(address) if self._exists(address) else None
        if current != driver:
            self.violations.append("unbind %s from %s: it is bound to %s (ENODEV)" % (address, driver, current))
            return
        self.events.append(("unbind", address, driver))
        os.unlink(self.sys / "bus/pci/drivers" / driver / address)
        os.unlink(self.device_dir(address) / "driver")

    def _probe(self, address):
        if not self._exists(address):
            self.violations.append("drivers_probe %s: no such device (ENODEV)" % address)
            return
        if self.driver_of(address) is not None:
            self.events.append(("probe", address, "already bound"))
            return
        override = self.override_of(address)
        candidates = [override] if override is not None else sorted(self._drivers)
        for driver in candidates:
            if driver in self._drivers and self._matches(driver, address):
                self.events.append(("probe", address, driver))
                self._link_driver(address, driver)
                return
        self.events.append(("probe", address, None))

    def _link_driver(self, address, driver):
        device = self.device_dir(address)
        driver_dir = self.sys / "bus/pci/drivers" / driver
        os.symlink(os.path.relpath(device, driver_dir), driver_dir / address)
        os.symlink(os.path.relpath(driver_dir, device), device / "driver")

    def _probe_driver(self, address):
        """The first driver whose ID table matches (what an automatic probe binds), or None."""
        return next((d for d in sorted(self._drivers) if self._matches(d, address)), None)

    # -- SR-IOV ------------------------------------------------------------------

    def _vf_address(self, pf, index):
        config = self._sriov[pf]
        domain, bus, rest = pf.split(":")
        slot, function = rest.split(".")
        rid = (int(bus, 16) << 8 | int(slot, 16) << 3 | int(function)) + config["offset"] + index * config["stride"]
        return "%s:%02x:%02x.%x" % (domain, rid >> 8, (rid >> 3) & 0x1F, rid & 7)

    def _numvfs_changed(self, path, old, new):
        pf = Path(path).parent.name
        config = self._sriov[pf]
        if not new.isdigit():
            self.violations.append("sriov_numvfs of %s: %r is not a number (EINVAL)" % (pf, new))
            return False
        count, current = int(new), int(old)
        if count > config["total"]:
            self.violations.append(
                "sriov_numvfs of %s: %d is more than sriov_totalvfs %d (ERANGE)" % (pf, count, config["total"])
            )
            return False
        if self.driver_of(pf) is None:
            self.violations.append("sriov_numvfs of %s: no driver bound to the PF (ENOENT)" % pf)
            return False
        if count and current:
            self.violations.append(
                "sriov_numvfs of %s: %d VFs already enabled, set 0 before %d (EBUSY)" % (pf, current, count)
            )
            return False
        # The kernel's own form of the value first: a writer waits for the VFs, then may write again.
        Path(path).write_text("%d\n" % count)
        self.events.append(("sriov_numvfs", pf, count))
        if count:
            self._enable_vfs(pf, count)
        else:
            self._disable_vfs(pf)
        return True

    def _enable_vfs(self, pf, count):
        config = self._sriov[pf]
        pf_dir = self.device_dir(pf)
        autoprobe = (pf_dir / "sriov_drivers_autoprobe").read_text().strip() != "0"
        for index in range(count):
            address = self._vf_address(pf, index)
            self.add_device(
                address,
                config["vendor"],
                config["device"],
                config["pci_class"],
                group=config["group"] + index,
                numa_node=config["numa_node"],
                bars=config["bars"],
                parent=config["parent"],
                physfn=pf,
                local_cpus=config["local_cpus"],
                reset_methods="flr",
            )
            vf_dir = self.device_dir(address)
            if self._vgpu_types[pf]:
                (vf_dir / "nvidia").mkdir()
                (vf_dir / "nvidia/current_vgpu_type").write_text("0\n")
                self._write_creatable(pf, address)
                self._watch(vf_dir / "nvidia/current_vgpu_type", self._vgpu_changed)
            if autoprobe:
                driver = self._probe_driver(address)
                if driver:
                    self._link_driver(address, driver)
            # Linked last: a VF the PF lists is complete (the kernel probes it before the write returns).
            os.symlink(os.path.relpath(vf_dir, pf_dir), pf_dir / ("virtfn%d" % index))
        self._refresh_vgpu_types(pf)

    def _disable_vfs(self, pf):
        pf_dir = self.device_dir(pf)
        for index, address in enumerate(self.vfs_of(pf)):
            vf_dir = self.device_dir(address)
            driver = self.driver_of(address)
            if driver:
                os.unlink(self.sys / "bus/pci/drivers" / driver / address)
            group_link = vf_dir / "iommu_group"
            if os.path.islink(group_link):
                group_dir = group_link.resolve()
                os.unlink(group_dir / "devices" / address)
                if not os.listdir(group_dir / "devices"):
                    shutil.rmtree(group_dir)
            self._drop_fifos(vf_dir)
            os.unlink(self.sys / "bus/pci/devices" / address)
            os.unlink(pf_dir / ("virtfn%d" % index))
            shutil.rmtree(vf_dir)

    # -- NVIDIA vGPU on VFs --------------------------------------------------------

    def _vgpu_changed(self, path, old, new):
        vf = Path(path).parent.parent.name
        pf = os.path.basename(os.readlink(self.device_dir(vf) / "physfn"))
        creatable = self._creatable(pf, vf, own=old)
        if not new.isdigit():
            self.violations.append("current_vgpu_type of %s: %r is not a type ID (EINVAL)" % (vf, new))
            return False
        if new != "0" and old != "0":
            self.violations.append("current_vgpu_type of %s: it has type %s, set 0 before %s (EBUSY)" % (vf, old, new))
            return False
        if new != "0" and new not in creatable:
            self.violations.append(
                "current_vgpu_type of %s: type %s is not creatable there (%s) (EINVAL)"
                % (vf, new, ", ".join(creatable) or "none")
            )
            return False
        Path(path).write_text(new + "\n")
        self.events.append(("current_vgpu_type", vf, new))
        self._refresh_vgpu_types(pf)
        return True

    def _creatable(self, pf, vf, own=None):
        """The vGPU types ``vf`` (whose type is ``own``, else as its file says) can take now: none
        while it has one, else those that fit in the frame buffer the GPU's vGPUs leave."""
        types = self._vgpu_types[pf]
        current = {v: own if v == vf and own is not None else self.vgpu_type_of(v) for v in self.vfs_of(pf)}
        if current.get(vf, "0") != "0":
            return []
        free = self._sriov[pf]["vgpu_memory"] - sum(types[t][1] for t in current.values() if t != "0")
        return sorted((t for t in types if types[t][1] <= free), key=int)

    def _refresh_vgpu_types(self, pf):
        if self._vgpu_types[pf]:
            for vf in self.vfs_of(pf):
                self._write_creatable(pf, vf)

    def _write_creatable(self, pf, vf):
        types = self._vgpu_types[pf]
        lines = [VGPU_HEADER] + ["%-5s : %s" % (t, types[t][0]) for t in self._creatable(pf, vf)]
        (self.device_dir(vf) / "nvidia/creatable_vgpu_types").write_text("\n".join(lines) + "\n")

    # -- mediated devices ----------------------------------------------------------

    def _mdev_available(self, parent):
        """``{type: instances left}``: every type while the parent has no mdev, then only its type."""
        types = self._mdev_parents[parent]
        existing = [t for p, t in self.mdevs().values() if p == parent]
        if not existing:
            return {t: n for t, (_name, n) in types.items()}
        return {t: (n - existing.count(t) if t == existing[0] else 0) for t, (_name, n) in types.items()}

    def _refresh_mdev_types(self, parent):
        for mdev_type, left in self._mdev_available(parent).items():
            (self.device_dir(parent) / "mdev_supported_types" / mdev_type / "available_instances").write_text(
                "%d\n" % left
            )

    def _mdev_create(self, type_dir, uuid):
        parent = type_dir.parent.parent.name
        mdev_type = type_dir.name
        if not _UUID_RE.match(uuid):
            self.violations.append("create %s on %s: %r is not a UUID (EINVAL)" % (mdev_type, parent, uuid))
            return
        if uuid in self.mdevs():
            self.violations.append("create %s on %s: %s exists already (EEXIST)" % (mdev_type, parent, uuid))
            return
        if self._mdev_available(parent)[mdev_type] < 1:
            self.violations.append("create %s on %s: no instance left (EDQUOT)" % (mdev_type, parent))
            return
        self.events.append(("mdev_create", parent, mdev_type, uuid))
        device = self.device_dir(parent) / uuid
        device.mkdir()
        os.symlink(os.path.relpath(type_dir, device), device / "mdev_type")
        os.symlink(os.path.relpath(device, type_dir / "devices"), type_dir / "devices" / uuid)
        (self.sys / "bus/mdev/devices").mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(device, self.sys / "bus/mdev/devices"), self.sys / "bus/mdev/devices" / uuid)
        self._next_group += 1
        self._join_group(device, uuid, self._next_group)
        self._fifo(device / "remove")
        self._refresh_mdev_types(parent)

    def _mdev_remove(self, device, value):
        uuid = device.name
        if value != "1":
            self.violations.append("remove %s: write 1, not %r (EINVAL)" % (uuid, value))
            return
        parent = device.parent.name
        self.events.append(("mdev_remove", parent, uuid))
        type_dir = (device / "mdev_type").resolve()
        group_dir = (device / "iommu_group").resolve()
        self._drop_fifos(device)
        os.unlink(type_dir / "devices" / uuid)
        os.unlink(self.sys / "bus/mdev/devices" / uuid)
        shutil.rmtree(group_dir)
        shutil.rmtree(device)
        self._refresh_mdev_types(parent)


def standard_drivers(host: FakeHost, vfio=True):
    """The host drivers the scenarios use, with ID tables like the real ones."""
    host.add_driver(
        "nvidia", ids=[(NVIDIA, None, 0x0300), (NVIDIA, None, 0x0302), (NVIDIA, None, 0x0680)], module="nvidia"
    )
    host.add_driver("snd_hda_intel", ids=[(None, None, 0x0403)], module="snd_hda_intel")
    host.add_driver("xhci_hcd", ids=[(None, None, 0x0C03)], module="xhci_pci")
    host.add_driver("nvidia-gpu", ids=[(NVIDIA, None, 0x0C80)], module="i2c_nvidia_gpu")
    host.add_driver("pcieport", ids=[(None, None, 0x0604)])
    host.add_driver("nvme", ids=[(None, None, 0x0108)], module="nvme")
    host.add_driver("amdgpu", ids=[("1002", None, 0x0300)], module="amdgpu")
    host.add_driver("ice", ids=[(INTEL, "1592", 0x0200)], module="ice")
    host.add_driver("iavf", ids=[(INTEL, "1889", 0x0200)], module="iavf")
    host.add_driver("pci-stub", ids=[], module=None)
    if vfio:
        host.add_driver("vfio-pci", ids=[], module="vfio_pci")


def h100_bars():
    # An H100 SXM: 16 MiB register BAR, 128 GiB prefetchable 64-bit BAR1, 32 MiB 64-bit BAR3.
    return [(0, 16 * MIB, False, False), (1, 128 * GIB, True, True), (3, 32 * MIB, True, True)]


def consumer_gpu_bars():
    # A GeForce/Quadro with resizable BAR off: 16 MiB, 256 MiB and 32 MiB.
    return [(0, 16 * MIB, False, False), (1, 256 * MIB, True, True), (3, 32 * MIB, True, True)]


# -- the GPU host scenarios (SCENARIOS) ------------------------------------------------------


def _bmc_vga(host: FakeHost, group: int | None):
    # The server's BMC (ASPEED) is the boot VGA device and the console; no driver loaded here.
    host.add_device("0000:03:00.0", "1a03", "2000", VGA, group=group, boot_vga=True, numa_node=0)


def _card(host: FakeHost, slot: str, device: str, audio: str, group: int | None, **extra):
    """A consumer NVIDIA card: the VGA function on nvidia and its HDMI audio function on snd_hda_intel."""
    host.add_device(slot + ".0", NVIDIA, device, VGA, driver="nvidia", group=group, bars=consumer_gpu_bars(), **extra)
    extra.pop("boot_vga", None)
    host.add_device(slot + ".1", NVIDIA, audio, AUDIO, driver="snd_hda_intel", group=group, reset_methods=None, **extra)


def scenario_gpu_audio(host: FakeHost):
    """A GeForce with its HDMI audio function, alone in IOMMU group 1."""
    standard_drivers(host)
    host.iommu_on()
    _card(host, "0000:01:00", "2204", "1aef", group=1, numa_node=0, boot_vga=False)
    _bmc_vga(host, group=3)


def scenario_shared_usb(host: FakeHost):
    """A GPU whose IOMMU group also holds a USB controller on xhci_hcd (no ACS between the slots)."""
    standard_drivers(host)
    host.iommu_on()
    _card(host, "0000:0a:00", "1b80", "10f0", group=12, boot_vga=False)
    host.add_device("0000:0b:00.0", "1912", "0014", USB_XHCI, driver="xhci_hcd", group=12)
    _bmc_vga(host, group=3)


def scenario_behind_bridge(host: FakeHost):
    """A GPU behind a PCIe root port that shares its IOMMU group."""
    standard_drivers(host)
    host.iommu_on()
    host.add_device("0000:00:01.0", "8086", "1901", PCI_BRIDGE, driver="pcieport", group=2, reset_methods=None)
    _card(host, "0000:01:00", "1e84", "10f8", group=2, boot_vga=False, parent="0000:00:01.0")
    _bmc_vga(host, group=3)


def scenario_boot_vga(host: FakeHost):
    """A workstation whose only GPU is the boot VGA device (the console)."""
    standard_drivers(host)
    host.iommu_on()
    _card(host, "0000:01:00", "2204", "1aef", group=1, boot_vga=True)


def scenario_quadro(host: FakeHost):
    """A Quadro RTX 6000: VGA, HDMI audio, USB 3.1 (xhci) and USB Type-C UCSI functions in one slot and group."""
    standard_drivers(host)
    host.iommu_on()
    host.add_device(
        "0000:65:00.0",
        NVIDIA,
        "1e30",
        VGA,
        driver="nvidia",
        group=40,
        numa_node=0,
        bars=consumer_gpu_bars(),
        boot_vga=False,
    )
    host.add_device("0000:65:00.1", NVIDIA, "10f8", AUDIO, driver="snd_hda_intel", group=40, numa_node=0)
    host.add_device("0000:65:00.2", NVIDIA, "1ad8", USB_XHCI, driver="xhci_hcd", group=40, numa_node=0)
    host.add_device("0000:65:00.3", NVIDIA, "1ad9", SERIAL_BUS, driver="nvidia-gpu", group=40, numa_node=0)
    _bmc_vga(host, group=3)


HGX_NODE0 = ["0000:18:00.0", "0000:2a:00.0", "0000:3a:00.0", "0000:5d:00.0"]
HGX_NODE1 = ["0000:9a:00.0", "0000:ab:00.0", "0000:ba:00.0", "0000:db:00.0"]
HGX_NVSWITCHES = ["0000:05:00.0", "0000:06:00.0", "0000:07:00.0", "0000:08:00.0"]
HGX_CPUS = {0: "0-55,112-167", 1: "56-111,168-223"}


def scenario_hgx(host: FakeHost):
    """An 8-GPU HGX H100 box (two sockets, 224 CPUs, 46-bit physical addresses): four GPUs on NUMA
    node 0, four on node 1, each behind its own PCIe switch port in its own IOMMU group, the
    board's four NVSwitches (each in its own group, on node 0), an NVMe drive on node 1 and the BMC's VGA."""
    standard_drivers(host)
    host.iommu_on(units=("dmar0", "dmar1", "dmar2", "dmar3"))
    host.set_nodes(HGX_CPUS)
    host.set_cpu_vendor("GenuineIntel", phys_bits=46)
    for index, address in enumerate(HGX_NODE0 + HGX_NODE1):
        node = 0 if address in HGX_NODE0 else 1
        bridge = "0000:%02x:00.0" % (int(address[5:7], 16) - 1)
        host.add_device(
            bridge, "1000", "c030", PCI_BRIDGE, driver="pcieport", group=100 + index, numa_node=node, reset_methods=None
        )
        host.add_device(
            address,
            NVIDIA,
            "2330",
            GPU_3D,
            driver="nvidia",
            group=10 + index,
            numa_node=node,
            bars=h100_bars(),
            parent=bridge,
            local_cpus=HGX_CPUS[node],
            subsystem=(NVIDIA, "16c1"),
        )
    host.add_device(
        "0000:04:00.0", "1000", "c030", PCI_BRIDGE, driver="pcieport", group=90, numa_node=0, reset_methods=None
    )
    for index, address in enumerate(HGX_NVSWITCHES):
        host.add_device(
            address,
            NVIDIA,
            "22a3",
            OTHER_BRIDGE,
            driver="nvidia",
            group=70 + index,
            numa_node=0,
            bars=[(0, 32 * MIB, False, False)],
            parent="0000:04:00.0",
            local_cpus=HGX_CPUS[0],
            subsystem=(NVIDIA, "1796"),
        )
    host.add_device("0000:c0:00.0", "144d", "a80a", NVME, driver="nvme", group=60, numa_node=1)
    _bmc_vga(host, group=3)


# NVIDIA vGPU types of the L40S-like GPU (type ID: name, frame buffer in GiB of its 48); the IDs are made up.
L40S_VGPU_TYPES = {"1155": ("NVIDIA L40S-48Q", 48), "1154": ("NVIDIA L40S-24Q", 24), "1153": ("NVIDIA L40S-12Q", 12)}


def scenario_sriov(host: FakeHost):
    """An L40S-like GPU used through SR-IOV with NVIDIA vGPU on its VFs (vGPU 17 and later): the
    physical function has 16 of 32 VFs enabled (41:00.4 onwards, offset 4, stride 1), each VF on
    the nvidia driver in its own IOMMU group, offering the vGPU types of L40S_VGPU_TYPES."""
    standard_drivers(host)
    host.iommu_on()
    host.set_nodes({0: "0-31"})
    host.add_device(
        "0000:41:00.0",
        NVIDIA,
        "26b9",
        GPU_3D,
        driver="nvidia",
        group=20,
        numa_node=0,
        bars=h100_bars(),
        sriov_total=32,
        sriov_num=16,
        local_cpus="0-31",
        vf=dict(device="26b9", bars=[(1, 2 * GIB, True, True)], offset=4, stride=1, group=200, vgpu_memory=48),
        vgpu_types=L40S_VGPU_TYPES,
    )
    _bmc_vga(host, group=3)


# Mediated-device (vGPU) types of the T4-like GPU: name, instances per GPU.
T4_MDEV_TYPES = {"nvidia-222": ("GRID T4-1B", 16), "nvidia-228": ("GRID T4-8Q", 2), "nvidia-230": ("GRID T4-16Q", 1)}


def scenario_mdev(host: FakeHost):
    """A T4-like GPU shared through mediated devices (NVIDIA vGPU before Ada), on NUMA node 0."""
    standard_drivers(host)
    host.iommu_on()
    host.add_device(
        "0000:3b:00.0",
        NVIDIA,
        "1eb8",
        GPU_3D,
        driver="nvidia",
        group=30,
        numa_node=0,
        bars=[(0, 16 * MIB, False, False), (1, 256 * MIB, True, True), (3, 32 * MIB, True, True)],
        mdev_types=T4_MDEV_TYPES,
    )
    _bmc_vga(host, group=3)


def scenario_nic_sriov(host: FakeHost):
    """An E810-like NIC whose physical function (on ice, NUMA node 1) offers 8 VFs
    (3b:02.0 onwards: offset 16, stride 1) that probe to iavf; none enabled."""
    standard_drivers(host)
    host.iommu_on()
    host.set_nodes({0: "0-15", 1: "16-31"})
    host.add_device(
        "0000:3b:00.0",
        INTEL,
        "1592",
        ETHERNET,
        driver="ice",
        group=40,
        numa_node=1,
        bars=[(0, 32 * MIB, True, True), (3, 64 * KIB, True, True)],
        sriov_total=8,
        local_cpus="16-31",
        vf=dict(device="1889", bars=[(0, 128 * KIB, True, True)], offset=16, stride=1, group=300),
    )


TWO_NODE_GPUS = {"0000:17:00.0": 0, "0000:31:00.0": 0, "0000:98:00.0": 1, "0000:b1:00.0": 1}
TWO_NODE_CPUS = {0: "0-15,32-47", 1: "16-31,48-63"}


def scenario_two_nodes(host: FakeHost):
    """A 2-socket workstation with four consumer GPUs (each with its HDMI audio function, small
    BARs), two on NUMA node 0 and two on node 1, each slot in its own IOMMU group."""
    standard_drivers(host)
    host.iommu_on()
    host.set_nodes(TWO_NODE_CPUS)
    for index, (slot, node) in enumerate(TWO_NODE_GPUS.items()):
        _card(host, slot[:-2], "2204", "1aef", group=80 + index, numa_node=node, local_cpus=TWO_NODE_CPUS[node])
    _bmc_vga(host, group=3)


def scenario_iommu_off(host: FakeHost):
    """A GPU and its audio function on a host whose IOMMU is off (no groups, no units)."""
    standard_drivers(host)
    _card(host, "0000:01:00", "2204", "1aef", group=None, boot_vga=False)
    _bmc_vga(host, group=None)


SCENARIOS = {
    "gpu_audio": scenario_gpu_audio,
    "shared_usb": scenario_shared_usb,
    "behind_bridge": scenario_behind_bridge,
    "boot_vga": scenario_boot_vga,
    "quadro": scenario_quadro,
    "hgx": scenario_hgx,
    "two_nodes": scenario_two_nodes,
    "sriov": scenario_sriov,
    "mdev": scenario_mdev,
    "nic_sriov": scenario_nic_sriov,
    "iommu_off": scenario_iommu_off,
}
