# -*- coding: utf-8 -*-
"""roles/image with ``image_source: url``: a download with a checksum, as real
users get an Ubuntu or Debian cloud image, served by ``python3 -m http.server``
inside the lab namespace (ansible-playbook runs there too, so its downloads
never leave it). A second run changes nothing; a wrong checksum fails and
leaves neither a cached file nor a volume."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tempfile
import uuid

import pytest

from ansible_collections.iaas.kvm.plugins.module_utils._storage import overlays_first
from tests.integration.conftest import LAB_NETNS, REPO
from tests.integration.labmodule import lab_http_server
from tests.state import files_state

pytestmark = [pytest.mark.lab]


def _venv_bin():
    override = os.environ.get("IAAS_KVM_VENV")
    return os.path.join(override or "/opt/iaas-kvm/venv", "bin")


@pytest.fixture
def served(tmp_path):
    """A small qcow2 image and its SHA-256, served over HTTP in the lab namespace."""
    directory = tmp_path / "www"
    directory.mkdir()
    image = directory / "iaastest-cloud.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "64M"], check=True)
    with lab_http_server(directory) as url:
        yield url + "/" + image.name, hashlib.sha256(image.read_bytes()).hexdigest()


@pytest.fixture
def pool(lab_conn):
    directory = tempfile.mkdtemp(prefix="iaastest-imgpool-")
    os.chmod(directory, 0o755)  # noqa: S103 - QEMU runs as its own user and must reach the pool
    name = "iaastest-imgpool-%s" % uuid.uuid4().hex[:6]
    made = lab_conn.storagePoolCreateXML(
        "<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>" % (name, directory), 0
    )
    yield made
    made.refresh(0)
    for vol in overlays_first(made.listAllVolumes(0)):
        vol.delete(0)
    made.destroy()
    os.rmdir(directory)


def converge(tmp_path, pool, url, checksum):
    playbook = tmp_path / "iaastest-image.yml"
    playbook.write_text(
        "- name: Image from a URL\n"
        "  hosts: localhost\n"
        "  gather_facts: false\n"
        "  roles:\n"
        "    - role: iaas.kvm.image\n"
        "      vars:\n"
        "        image_source: url\n"
        "        image_name: iaastest-urlimg\n"
        "        image_url: %s\n"
        "        image_checksum: %s\n"
        "        image_cache_dir: %s\n"
        "        image_dir: %s\n"
        "        image_pool: %s\n" % (url, checksum, tmp_path / "cache", tmp_path / "images", pool.name())
    )
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_FORCE_COLOR="0",
        PATH="%s:%s" % (_venv_bin(), os.environ.get("PATH", "")),
    )
    command = ["ip", "netns", "exec", LAB_NETNS, os.path.join(_venv_bin(), "ansible-playbook")]
    command += ["-i", "localhost,", "-c", "local", "-e", "ansible_python_interpreter=/usr/bin/python3", str(playbook)]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    output = " ".join((done.stdout + done.stderr).split())
    recap = re.search(r"localhost : ok=\d+ changed=(\d+) unreachable=0 failed=(\d+)", output)
    assert recap, output
    return done.returncode, int(recap.group(1)), output


def test_image_downloaded_with_a_checksum_once(tmp_path, pool, served):
    url, sha = served
    rc, changed, output = converge(tmp_path, pool, url, "sha256:" + sha)
    assert rc == 0 and changed > 0, output
    pool.refresh(0)
    assert "iaastest-urlimg.qcow2" in [v.name() for v in pool.listAllVolumes(0)]
    (cached,) = (tmp_path / "cache").iterdir()
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == sha

    rc, changed, output = converge(tmp_path, pool, url, "sha256:" + sha)
    assert rc == 0 and changed == 0, output


def test_a_wrong_checksum_fails_and_leaves_nothing(tmp_path, pool, served):
    url, _sha = served
    before = files_state(tmp_path / "cache")
    rc, _changed, output = converge(tmp_path, pool, url, "sha256:" + "0" * 64)
    assert rc != 0 and "checksum" in output.lower(), output
    assert files_state(tmp_path / "cache") == before
    pool.refresh(0)
    assert [v.name() for v in pool.listAllVolumes(0)] == []
