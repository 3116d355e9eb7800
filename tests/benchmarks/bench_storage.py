# -*- coding: utf-8 -*-
"""kvm_volume: how long a linked clone takes on a 1 GiB and a 20 GiB base
(it should not depend on the base: no data is copied), and how fast an image
is imported compared with ``cp`` of the same file on the same disk.

    python tests/benchmarks/bench_storage.py [--quick] [--repeat N] [--import-mib 200,2048]

Imports of a 200 MiB and a 2 GiB file (in the page cache before each run),
five rounds each, interleaved with cp: (a) until the command returns, (b) until
the copy is on the disk (an fsync of the copy after each). A file goes into
this machine's directory pool through the kernel (copy_file_range, hashed
beside it); the stream API path (remote hypervisors, other pools) is measured
too. --quick (CI): 200 MiB, three rounds.

Targets: a clone well under 0.5 s; import/cp throughput >= 0.5 in (a) and
>= 0.8 in (b).

"module" times are the module's main() run in this process (argument parsing,
libvirt connection, the work, the result); "on host" times run the module file
with the hypervisor's Python (/usr/bin/python3) as Ansible does on a host,
interpreter start and imports included.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from unittest import mock

REPO = Path(__file__).resolve().parents[2]
for entry in (Path(__file__).resolve().parent, REPO, REPO / "collections"):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

import libvirt  # noqa: E402
from targets import Targets  # noqa: E402

from tests.conftest import run_module  # noqa: E402

MODULES = REPO / "collections" / "ansible_collections" / "iaas" / "kvm" / "plugins" / "modules"
TARGET_PYTHON = os.environ.get("IAAS_KVM_TARGET_PYTHON", "/usr/bin/python3")
MIB, GIB = 1024**2, 1024**3


def connect():
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    return libvirt.open(os.environ.get("IAAS_KVM_TEST_URI", "qemu:///system"))


def timed(function):
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def ok(result):
    if result.failed:
        raise SystemExit("module failed: %s" % result["msg"])
    return result


def host_pythonpath(directory):
    """PYTHONPATH for the hypervisor's Python: the collection, and ansible-core alone
    (linked into ``directory``), so that libvirt and lxml are the distribution's."""
    import ansible

    link = directory / "ansible"
    if not link.exists():
        link.symlink_to(Path(ansible.__file__).parent)
    return os.pathsep.join([str(REPO / "collections"), str(directory)])


def on_host(module, args, pythonpath):
    """Run the module file with the hypervisor's Python, as Ansible does; return seconds."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="iaastest-bench-", delete=False) as handle:
        json.dump(dict(ANSIBLE_MODULE_ARGS=args), handle)
    try:
        env = dict(os.environ, PYTHONPATH=pythonpath)
        seconds, done = timed(
            lambda: subprocess.run(
                [TARGET_PYTHON, str(MODULES / (module + ".py")), handle.name],
                capture_output=True,
                text=True,
                env=env,
                check=False,
            )
        )
    finally:
        os.unlink(handle.name)
    if '"failed": true' in done.stdout or done.returncode != 0:
        raise SystemExit("module failed on the host's Python: %s %s" % (done.stdout, done.stderr))
    return seconds


def write_random(path, size):
    with open(path, "wb") as handle:
        left = size
        while left:
            chunk = os.urandom(min(4 * MIB, left))
            handle.write(chunk)
            left -= len(chunk)


def make_bases(pool, directory):
    """base-1g: 1 GiB virtual, all of it written; base-20g: 20 GiB virtual, 512 MiB written."""
    bases = []
    for name, virtual, data in (("iaastest-base-1g.qcow2", GIB, GIB), ("iaastest-base-20g.qcow2", 20 * GIB, 512 * MIB)):
        raw = directory / (name + ".raw")
        write_random(raw, data)
        if virtual > data:
            os.truncate(raw, virtual)
        subprocess.run(
            ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(Path(pool.path) / name)], check=True
        )
        raw.unlink()
        bases.append(name)
    ok(run_module("kvm_pool_info", dict(name=[pool.name])))  # refreshes the pool
    info = ok(run_module("kvm_volume_info", dict(pool=pool.name, name=bases)))
    return info["volumes"]


def bench_clones(pool, bases, repeat, pythonpath):
    rows = []
    for base in bases:
        create, rerun, host = [], [], []
        for index in range(repeat):
            task = dict(
                pool=pool.name, name="iaastest-clone-%d.qcow2" % index, backing_volume=base["name"], capacity="40G"
            )
            seconds, result = timed(lambda task=task: ok(run_module("kvm_volume", task)))
            assert result.changed
            create.append(seconds)
            seconds, result = timed(lambda task=task: ok(run_module("kvm_volume", task)))
            assert not result.changed
            rerun.append(seconds)
        for index in range(repeat):
            task = dict(
                pool=pool.name, name="iaastest-hclone-%d.qcow2" % index, backing_volume=base["name"], capacity="40G"
            )
            host.append(on_host("kvm_volume", task, pythonpath))
        for index in range(repeat):
            for prefix in ("iaastest-clone-", "iaastest-hclone-"):
                ok(run_module("kvm_volume", dict(pool=pool.name, name="%s%d.qcow2" % (prefix, index), state="absent")))
        rows.append((base, create, rerun, host))
    return rows


def drop_from_cache(path):
    """Evict one file's pages from the page cache (only that file: the machine is shared)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def warm_up(path):
    with open(path, "rb") as handle:
        while handle.read(16 * MIB):
            pass


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _stream_path():
    """The module as against a pool that is not a directory of this machine:
    the volume's file is not one it may write, so the bytes go through the stream API."""
    module = importlib.import_module("ansible_collections.iaas.kvm.plugins.modules.kvm_volume")
    return mock.patch.object(module, "local_volume_file", lambda conn, pool, vol: None)


def bench_import(pool, directory, size_mib, repeat):
    """cp and kvm_volume imports of one file (in the page cache before each run),
    interleaved: (a) the time until the command returns, (b) until the copy is
    on the disk (fsync of the copy after it returns). kvm_volume imports a file
    into a directory pool of this machine through the kernel (copy_file_range),
    and elsewhere through the stream API, measured here too. Seconds per run."""
    source = directory / ("iaastest-import-%d.raw" % size_mib)
    write_random(source, size_mib * MIB)
    times = {}
    for index in range(repeat):
        for synced in (False, True):
            for way in ("cp", "kernel", "stream"):
                warm_up(source)
                name = "iaastest-import-%d.raw" % index
                target = Path(pool.path) / name
                task = dict(pool=pool.name, name=name, source=str(source), format="raw")
                start = time.perf_counter()
                if way == "cp":
                    subprocess.run(["cp", str(source), str(target)], check=True)
                elif way == "kernel":
                    assert ok(run_module("kvm_volume", task)).changed
                else:
                    with _stream_path():
                        assert ok(run_module("kvm_volume", task)).changed
                if synced:
                    _fsync(target)
                times.setdefault((way, synced), []).append(time.perf_counter() - start)
                if way == "cp":
                    target.unlink()
                    continue
                if way == "kernel" and not synced:
                    seconds, result = timed(lambda task=task: ok(run_module("kvm_volume", task)))
                    assert not result.changed
                    times.setdefault(("rerun", False), []).append(seconds)
                ok(run_module("kvm_volume", dict(task, state="absent")))
        digest = hashlib.sha256()
        warm_up(source)
        with open(source, "rb") as handle:
            start = time.perf_counter()
            for chunk in iter(lambda: handle.read(4 * MIB), b""):
                digest.update(chunk)
            times.setdefault(("sha256", False), []).append(time.perf_counter() - start)
    source.unlink()
    return times


def summary(values):
    return "median %.3fs (min %.3f, max %.3f, n=%d)" % (
        statistics.median(values),
        min(values),
        max(values),
        len(values),
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--quick", action="store_true", help="the CI variant (3 repeats, a 200 MiB import)")
    parser.add_argument("--repeat", type=int, default=5, help="clones per base")
    parser.add_argument("--import-repeat", type=int, default=5, help="rounds of each import (median)")
    parser.add_argument("--import-mib", default="200,2048", help="sizes of the imported image in MiB")
    args = parser.parse_args()
    repeat = 3 if args.quick else args.repeat
    import_repeat = 3 if args.quick else args.import_repeat
    sizes = [200] if args.quick else [int(s) for s in args.import_mib.split(",")]
    parent = Path(tempfile.mkdtemp(prefix="iaastest-bench-", dir="/var/tmp"))
    pool = argparse.Namespace(name="iaastest-bench-%s" % uuid.uuid4().hex[:6], path=str(parent / "pool"))
    imports = {}
    try:
        ok(run_module("kvm_pool", dict(name=pool.name, path=pool.path, autostart=False)))
        bases = make_bases(pool, parent)
        clones = bench_clones(pool, bases, repeat, host_pythonpath(parent))
        for size in sizes:
            imports[size] = bench_import(pool, parent, size, import_repeat)
    finally:
        run_module("kvm_pool", dict(name=pool.name, state="absent", force=True))
        shutil.rmtree(parent, ignore_errors=True)

    targets = Targets(args.quick)
    print("kvm_volume linked clone (capacity 40G), pool in %s" % parent.parent)
    for base, create, rerun, host in clones:
        print(
            "  base %-24s virtual %5.1f GiB, allocated %6.0f MiB"
            % (base["name"], base["capacity"] / GIB, base["allocation"] / MIB)
        )
        print("    create, module:        %s" % summary(create))
        print("    create, on host:       %s" % summary(host))
        print("    re-run (no change):    %s" % summary(rerun))
    medians = [statistics.median(create) for _base, create, _rerun, _host in clones]
    print("  20 GiB / 1 GiB base, median create: %.2f" % (medians[1] / medians[0]))
    targets.check(
        "slowest median clone create", max(medians), "well under 0.5 s (< 0.25 s)", max(medians) < 0.25, "%.3fs"
    )
    for size, times in imports.items():
        print("import of a %d MiB raw image (random data, in the page cache) from a file on the same disk" % size)
        for synced, what, target in (
            (False, "(a) until the command returns", 0.5),
            (True, "(b) until the copy is on the disk (fsync after each)", 0.8),
        ):
            print("  %s:" % what)
            cp_med = statistics.median(times[("cp", synced)])
            for way, label in (("cp", "cp"), ("kernel", "kvm_volume (local)"), ("stream", "kvm_volume (stream)")):
                values = times[(way, synced)]
                print("    %-21s %s = %4.0f MiB/s" % (label + ":", summary(values), size / statistics.median(values)))
            ratio = cp_med / statistics.median(times[("kernel", synced)])
            stream = cp_med / statistics.median(times[("stream", synced)])
            print("    stream API path / cp throughput: %.2f (no target: remote hypervisors and other pools)" % stream)
            targets.check(
                "%d MiB %s import/cp throughput" % (size, "synced" if synced else "cached"),
                ratio,
                ">= %.1f" % target,
                ratio >= target,
            )
        print("  SHA-256 of the source alone:  %s" % summary(times[("sha256", False)]))
        print(
            "  kvm_volume re-run:            %s (the record matches: nothing is read)"
            % summary(times[("rerun", False)])
        )
    return targets.exit_code()


if __name__ == "__main__":
    sys.exit(main())
