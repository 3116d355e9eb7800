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
- ``reset`` and ``remove``: never written by the modules, so any write is a violation.

A write the kernel would refuse changes nothing and is recorded in
``violations`` (a real kernel returns an error; a FIFO cannot), so a careless
module sees its bind not happen, fails, and the test sees why. Every accepted
operation is recorded in ``events``. ``driver_override`` is a plain file, as
readable and writable as the kernel's (``(null)`` when unset).

The FIFOs work across processes, so ``ansible-playbook`` runs against the same
fake host as an in-process module run. Start the kernel (``with host:``) before
anything writes to the tree: a FIFO without its reader blocks the writer.
"""

from __future__ import annotations

import os
import select
import stat
import threading
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
NVME = 0x010802
ETHERNET = 0x020000

NVIDIA = "10de"
KERNEL_RELEASE = "6.1.0-18-amd64"


class FakeHost:
    """A fake host below ``root``; ``with host:`` runs its kernel."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.sys = self.root / "sys"
        self.events: list[tuple] = []
        self.violations: list[str] = []
        self._drivers: dict[str, list[tuple]] = {}
        self._thread = None
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
        assert self._thread is None, "build the fake host before starting its kernel"
        os.mkfifo(path, 0o200)

    def set_cmdline(self, text: str):
        (self.root / "proc/cmdline").write_text(text + "\n")

    def set_cpu_vendor(self, vendor: str):
        (self.root / "proc/cpuinfo").write_text(
            "processor\t: 0\nvendor_id\t: %s\nmodel name\t: fake CPU\n\nprocessor\t: 1\nvendor_id\t: %s\n"
            % (vendor, vendor)
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
    ):
        """One PCI function. ``bars``: (index, size, is_64bit, prefetchable) tuples."""
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
            files["sriov_totalvfs"] = str(sriov_total)
            files["sriov_numvfs"] = str(sriov_num)
        for name, text in files.items():
            (path / name).write_text(text + "\n")
        for name in ("reset", "remove"):
            self._fifo(path / name)
        for mdev_type, (mdev_name, available) in (mdev_types or {}).items():
            type_dir = path / "mdev_supported_types" / mdev_type
            type_dir.mkdir(parents=True)
            (type_dir / "name").write_text(mdev_name + "\n")
            (type_dir / "available_instances").write_text("%d\n" % available)
        os.symlink(os.path.relpath(path, self.sys / "bus/pci/devices"), self.sys / "bus/pci/devices" / address)
        if physfn:
            os.symlink(os.path.relpath(self.device_dir(physfn), path), path / "physfn")
        if group is not None:
            group_dir = self.sys / "kernel/iommu_groups" / str(group)
            (group_dir / "devices").mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.relpath(group_dir, path), path / "iommu_group")
            os.symlink(os.path.relpath(path, group_dir / "devices"), group_dir / "devices" / address)
        if driver:
            assert driver in self._drivers, "add the driver %s first" % driver
            self._link_driver(address, driver)

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
        fifos = {}
        for directory, _dirs, files in os.walk(self.sys):
            for name in files:
                path = os.path.join(directory, name)
                if stat.S_ISFIFO(os.lstat(path).st_mode):
                    # O_RDWR: the kernel end never sees end-of-file between writers.
                    fifos[os.open(path, os.O_RDWR | os.O_NONBLOCK)] = path
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._serve, args=(fifos,), daemon=True, name="fake-kernel")
        self._thread.start()

    def stop(self):
        if self._thread is None:
            return
        os.write(self._stop_w, b"x")
        self._thread.join(10)
        os.close(self._stop_r)
        os.close(self._stop_w)
        self._thread = None

    def _serve(self, fifos):
        poller = select.poll()
        for fd in fifos:
            poller.register(fd, select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        try:
            while True:
                for fd, _event in poller.poll():
                    if fd == self._stop_r:
                        return
                    try:
                        data = os.read(fd, 65536)
                    except BlockingIOError:
                        continue
                    for line in data.decode("utf-8", "replace").split("\n"):
                        if line.strip():
                            with self._lock:
                                self._handle(fifos[fd], line.strip())
        finally:
            for fd in fifos:
                os.close(fd)

    def _handle(self, path, value):
        relative = os.path.relpath(path, self.sys)
        parts = relative.split(os.sep)
        if relative == os.path.join("bus", "pci", "drivers_probe"):
            self._probe(value)
        elif parts[:3] == ["bus", "pci", "drivers"] and parts[4] == "bind":
            self._bind(parts[3], value)
        elif parts[:3] == ["bus", "pci", "drivers"] and parts[4] == "unbind":
            self._unbind(parts[3], value)
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


def standard_drivers(host: FakeHost, vfio=True):
    """The host drivers the scenarios use, with ID tables like the real ones."""
    host.add_driver("nvidia", ids=[(NVIDIA, None, 0x0300), (NVIDIA, None, 0x0302)], module="nvidia")
    host.add_driver("snd_hda_intel", ids=[(None, None, 0x0403)], module="snd_hda_intel")
    host.add_driver("xhci_hcd", ids=[(None, None, 0x0C03)], module="xhci_pci")
    host.add_driver("nvidia-gpu", ids=[(NVIDIA, None, 0x0C80)], module="i2c_nvidia_gpu")
    host.add_driver("pcieport", ids=[(None, None, 0x0604)])
    host.add_driver("nvme", ids=[(None, None, 0x0108)], module="nvme")
    host.add_driver("amdgpu", ids=[("1002", None, 0x0300)], module="amdgpu")
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


def scenario_hgx(host: FakeHost):
    """An 8-GPU HGX H100 box: four GPUs on NUMA node 0, four on node 1, each behind its own
    PCIe switch port in its own IOMMU group, an NVMe drive on node 1 and the BMC's VGA."""
    standard_drivers(host)
    host.iommu_on(units=("dmar0", "dmar1", "dmar2", "dmar3"))
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
            local_cpus="0-55,112-167" if node == 0 else "56-111,168-223",
            subsystem=(NVIDIA, "16c1"),
        )
    host.add_device("0000:c0:00.0", "144d", "a80a", NVME, driver="nvme", group=60, numa_node=1)
    _bmc_vga(host, group=3)


def scenario_sriov(host: FakeHost):
    """An L40S-like GPU used through SR-IOV: the physical function has 16 of 32 VFs enabled."""
    standard_drivers(host)
    host.iommu_on()
    host.add_device(
        "0000:41:00.0",
        NVIDIA,
        "26b9",
        GPU_3D,
        driver="nvidia",
        group=20,
        bars=h100_bars(),
        sriov_total=32,
        sriov_num=16,
        mdev_types={"nvidia-1155": ("NVIDIA L40S-48Q", 1)},
    )
    for function in (4, 5):
        host.add_device(
            "0000:41:00.%d" % function,
            NVIDIA,
            "26b9",
            GPU_3D,
            driver="nvidia",
            group=20 + function,
            physfn="0000:41:00.0",
            bars=[(1, 2 * GIB, True, True)],
        )
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
    "sriov": scenario_sriov,
    "iommu_off": scenario_iommu_off,
}
