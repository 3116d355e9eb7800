# -*- coding: utf-8 -*-
"""kvm_volume: how long a linked clone takes on a 1 GiB and a 20 GiB base
(it should not depend on the base: no data is copied), and how fast an image
is imported through the libvirt stream API compared with ``cp`` of the same file
on the same disk.

    python tests/benchmarks/bench_storage.py [--quick] [--repeat N] [--import-mib N]

Targets: a clone well under 0.5 s and the same for both bases within noise;
import throughput at least half of cp's.

"module" times are the module's main() run in this process (argument parsing,
libvirt connection, the work, the result); "on host" times run the module file
with the hypervisor's Python (/usr/bin/python3) as Ansible does on a host,
interpreter start and imports included.
"""

from __future__ import annotations

import argparse
import hashlib
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

REPO = Path(__file__).resolve().parents[2]
for entry in (REPO, REPO / "collections"):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

import libvirt  # noqa: E402

from ansible_collections.iaas.kvm.plugins.module_utils._storage import upload_stream, volume_xml  # noqa: E402
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


def stream_only(pool, source):
    """Seconds to send the file through the stream API alone (no hashing, no
    record): the transport's share of an import."""
    conn = connect()
    try:
        lv_pool = conn.storagePoolLookupByName(pool.name)
        size = source.stat().st_size
        vol = lv_pool.createXML(volume_xml("iaastest-stream.raw", size, "raw"), 0)
        try:
            with open(source, "rb") as handle:
                start = time.perf_counter()
                upload_stream(conn, vol, handle.read, size)
                return time.perf_counter() - start
        finally:
            vol.delete(0)
    finally:
        conn.close()


def bench_import(pool, directory, size_mib, repeat):
    """cp and kvm_volume import of the same file, with the source in the page cache
    (warm) and read from the disk (cold); seconds per run, and the SHA-256 time."""
    source = directory / "iaastest-import.raw"
    write_random(source, size_mib * MIB)
    times = dict(cp_warm=[], cp_cold=[], import_warm=[], import_cold=[], rerun=[], sha256=[], stream=[])
    for index in range(repeat):
        for cache in ("warm", "cold"):
            prepare = warm_up if cache == "warm" else drop_from_cache
            target = Path(pool.path) / ("iaastest-cp-%d.raw" % index)
            prepare(source)
            seconds, _result = timed(lambda target=target: subprocess.run(["cp", str(source), str(target)], check=True))
            times["cp_" + cache].append(seconds)
            target.unlink()
            task = dict(pool=pool.name, name="iaastest-import-%d.raw" % index, source=str(source), format="raw")
            prepare(source)
            seconds, result = timed(lambda task=task: ok(run_module("kvm_volume", task)))
            assert result.changed
            times["import_" + cache].append(seconds)
            seconds, result = timed(lambda task=task: ok(run_module("kvm_volume", task)))
            assert not result.changed
            times["rerun"].append(seconds)
            ok(run_module("kvm_volume", dict(task, state="absent")))
        warm_up(source)
        times["stream"].append(stream_only(pool, source))
        digest = hashlib.sha256()
        with open(source, "rb") as handle:
            start = time.perf_counter()
            for chunk in iter(lambda: handle.read(MIB), b""):
                digest.update(chunk)
            times["sha256"].append(time.perf_counter() - start)
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
    parser.add_argument("--quick", action="store_true", help="the CI variant (3 repeats)")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--import-mib", type=int, default=200, help="size of the imported image in MiB")
    args = parser.parse_args()
    repeat = 3 if args.quick else args.repeat
    parent = Path(tempfile.mkdtemp(prefix="iaastest-bench-", dir="/var/tmp"))
    pool = argparse.Namespace(name="iaastest-bench-%s" % uuid.uuid4().hex[:6], path=str(parent / "pool"))
    try:
        ok(run_module("kvm_pool", dict(name=pool.name, path=pool.path, autostart=False)))
        bases = make_bases(pool, parent)
        clones = bench_clones(pool, bases, repeat, host_pythonpath(parent))
        times = bench_import(pool, parent, args.import_mib, max(3, repeat // 3))
    finally:
        run_module("kvm_pool", dict(name=pool.name, state="absent", force=True))
        shutil.rmtree(parent, ignore_errors=True)

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
    print(
        "  20 GiB / 1 GiB base, median create: %.2f; target well under 0.5 s: %s"
        % (medians[1] / medians[0], "met" if max(medians) < 0.25 else "NOT met")
    )
    size = args.import_mib
    print("import of a %d MiB raw image (random data) from a file on the same disk" % size)
    for cache, where in (("warm", "in the page cache"), ("cold", "read from the disk")):
        cp_med, import_med = statistics.median(times["cp_" + cache]), statistics.median(times["import_" + cache])
        print("  source %s:" % where)
        print("    cp:                    %s = %.0f MiB/s" % (summary(times["cp_" + cache]), size / cp_med))
        print("    kvm_volume source:     %s = %.0f MiB/s" % (summary(times["import_" + cache]), size / import_med))
        ratio = cp_med / import_med
        print("    import/cp throughput: %.2f; target >= 0.5: %s" % (ratio, "met" if ratio >= 0.5 else "NOT met"))
    print("  of an import (warm):")
    print("    SHA-256 of the source: %s" % summary(times["sha256"]))
    print(
        "    stream API alone:      %s = %.0f MiB/s"
        % (summary(times["stream"]), size / statistics.median(times["stream"]))
    )
    print("  kvm_volume re-run:       %s (the record matches: nothing is read)" % summary(times["rerun"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
