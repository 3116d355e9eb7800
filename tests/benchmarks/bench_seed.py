# -*- coding: utf-8 -*-
"""cloudinit_seed: how long a seed with a 100 KB user-data takes, inside the
module and as a whole process, against ``cloud-localds`` (cloud-image-utils,
which runs genisoimage) on the same documents.

    python tests/benchmarks/bench_seed.py [--quick] [--repeat N] [--kib N]

Target: under 100 ms inside the module for a new seed.

"build" is the seed's documents rendered and the ISO image made (no file
written); "module" is the module's main() in this process for a new seed
(argument parsing, rendering, the image, the atomic write, the result) and for
an unchanged one (the existing image read back and compared); "on host" runs
the module file with the hypervisor's Python (/usr/bin/python3 and the
distribution's pycdlib), interpreter start and imports included, as Ansible
does on a host; "cloud-localds" is the reference tool's whole run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_storage import REPO, TARGET_PYTHON, host_pythonpath, ok, on_host, summary, timed
from targets import Targets

from ansible_collections.iaas.kvm.plugins.module_utils import _seed
from tests.conftest import run_module

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBenchmarkKeyBenchmarkKeyBenchmarkKeyBenchm bench@lab"


def task(kib):
    """A seed task whose user-data is ``kib`` KiB: a file of that size under write_files."""
    line = "# iaas.kvm benchmark payload: a configuration file of the guest, line %05d\n"
    lines, size = [], 0
    while size < kib * 1024:
        lines.append(line % len(lines))
        size += len(lines[-1])
    return dict(
        hostname="bench1",
        ssh_authorized_keys=[KEY],
        packages=["htop"],
        runcmd=[["systemctl", "restart", "ssh"]],
        user_data={"write_files": [{"path": "/etc/iaastest-bench.conf", "content": "".join(lines)}]},
        network_config={"version": 2, "ethernets": {"eth0": {"dhcp4": True}}},
    )


def build(args, destination):
    spec = _seed.SeedSpec(args, destination)
    documents = {name: doc.text for name, doc in spec.documents(spec.password_hash(None)).items()}
    return _seed.build_iso(documents)


def localds(directory, output):
    subprocess.run(
        [
            "cloud-localds",
            "--network-config=%s" % (directory / "network-config"),
            str(output),
            str(directory / "user-data"),
            str(directory / "meta-data"),
        ],
        check=True,
        capture_output=True,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--quick", action="store_true", help="the CI variant (3 repeats)")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--kib", type=int, default=100, help="size of the user-data in KiB")
    options = parser.parse_args()
    repeat = 3 if options.quick else options.repeat
    targets = Targets(options.quick)
    if shutil.which("cloud-localds") is None:
        raise SystemExit("cloud-localds is missing (Debian: cloud-image-utils)")
    directory = Path(tempfile.mkdtemp(prefix="iaastest-bench-seed-", dir="/var/tmp"))
    try:
        args = task(options.kib)
        seed_path = directory / "iaastest-bench-seed.iso"
        first = ok(run_module("cloudinit_seed", dict(args, path=str(seed_path))))
        documents = _seed.read_seed(seed_path.read_bytes())
        for name, text in documents.items():
            (directory / name).write_text(text, encoding="utf-8")
        user_data_bytes = len(documents["user-data"].encode("utf-8"))

        builds, news, sames, hosts, tools = [], [], [], [], []
        reference = directory / "iaastest-reference.iso"
        for _round in range(repeat):
            builds.append(timed(lambda: build(args, str(seed_path)))[0])
            seed_path.unlink()
            seconds, result = timed(lambda: ok(run_module("cloudinit_seed", dict(args, path=str(seed_path)))))
            assert result.changed and result["sha256"] == first["sha256"]
            news.append(seconds)
            seconds, result = timed(lambda: ok(run_module("cloudinit_seed", dict(args, path=str(seed_path)))))
            assert not result.changed
            sames.append(seconds)
            if reference.exists():
                reference.unlink()
            tools.append(timed(lambda: localds(directory, reference))[0])
        assert _seed.read_seed(reference.read_bytes()) == documents

        pythonpath = host_pythonpath(directory)
        for _round in range(repeat):
            seed_path.unlink()
            hosts.append(on_host("cloudinit_seed", dict(args, path=str(seed_path)), pythonpath))
        host_version = subprocess.run(
            [TARGET_PYTHON, "-c", "import sys, pycdlib; print(sys.version.split()[0], pycdlib.__file__)"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

        print("cloudinit_seed benchmark (%s)" % REPO)
        print(
            "  user-data %d bytes, seed image %d bytes (cloud-localds: %d bytes)"
            % (user_data_bytes, first["size"], reference.stat().st_size)
        )
        print("  build (render + ISO):        %s" % summary(builds))
        print("  module, new seed:            %s" % summary(news))
        print("  module, unchanged seed:      %s" % summary(sames))
        print("  on host, new seed:           %s  [%s]" % (summary(hosts), host_version))
        print("  cloud-localds, same input:   %s" % summary(tools))
        new_seed = statistics.median(news)
        targets.check("module, new seed (median)", new_seed, "< 0.100 s", new_seed < 0.1, "%.3fs")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return targets.exit_code()


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())
