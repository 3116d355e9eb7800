# -*- coding: utf-8 -*-
"""The built collection is clean and works on its own: installed from its
tarball into an empty directory, with only that directory on the collections
path, its modules load from there and run.

The build stage of scripts/test.sh runs these tests (no lab, no guest):
they need the built tarball, which is that stage's job, not a unit test's.
"""

from __future__ import annotations

import json
import re

from tests.packaging.conftest import BIN, GALAXY, isolated_env, run, warnings_in

MODULE = "kvm_vm_info"

PLAYBOOK = """\
- name: Run a module of the installed collection
  hosts: local
  gather_facts: false
  tasks:
    - name: List the VMs of libvirt's test driver
      iaas.kvm.kvm_vm_info:
        uri: test:///default
      register: info

    - name: Keep the module's result for the test
      ansible.builtin.copy:
        content: "{{ info | to_json }}"
        dest: "{{ result_file }}"
        mode: "0644"
"""


def test_build_prints_no_warning(built):
    _tarball, done = built
    assert not warnings_in(done), done.stdout + done.stderr
    assert "Created collection for iaas.kvm" in done.stdout


def test_installed_tarball_runs_its_module_from_the_install_directory(installed, tmp_path):
    installed, env = installed
    manifest = json.loads((installed / "MANIFEST.json").read_text())
    assert manifest["collection_info"]["version"] == GALAXY["version"]

    (tmp_path / "play.yml").write_text(PLAYBOOK)
    # The controller's Python (this virtualenv) has libvirt-python and lxml.
    (tmp_path / "hosts.ini").write_text(
        "[local]\nlocalhost ansible_connection=local ansible_python_interpreter=%s\n" % (BIN / "python")
    )
    result_file = tmp_path / "result.json"
    play = [BIN / "ansible-playbook", "-vvv", "-i", "hosts.ini", "play.yml", "-e", "result_file=%s" % result_file]
    done = run(play, tmp_path, env)

    # ansible-playbook names the file it packed for the task: the installed copy.
    used = [path for path in re.findall(r"Using module file (\S+)", done.stdout) if path.endswith("/%s.py" % MODULE)]
    assert used == [str(installed / "plugins" / "modules" / (MODULE + ".py"))], done.stdout
    result = json.loads(result_file.read_text())
    assert not result.get("failed"), result
    assert not result["changed"]
    assert [vm["name"] for vm in result["vms"]] == ["test"]  # the test driver's one domain
    assert result["vms"][0]["state"] == "running"

    # The same play without the installed collection cannot find the module:
    # nothing else on this machine (the checkout, a site directory) provides it.
    done = run(play, tmp_path, isolated_env(tmp_path, tmp_path / "empty"), fails=True)
    assert "couldn't resolve module/action 'iaas.kvm.kvm_vm_info'" in done.stdout + done.stderr


def test_installed_documentation_renders_from_the_install_directory(installed, tmp_path):
    installed, env = installed
    modules = sorted(p.stem for p in (installed / "plugins" / "modules").glob("*.py") if p.stem != "__init__")
    assert MODULE in modules
    done = run([BIN / "ansible-doc", "--json", "-t", "module", *("iaas.kvm." + m for m in modules)], tmp_path, env)
    docs = json.loads(done.stdout)
    assert sorted(docs) == ["iaas.kvm." + m for m in modules]
    for name, entry in docs.items():
        assert entry["doc"]["filename"] == str(installed / "plugins" / "modules" / (name.rpartition(".")[2] + ".py"))
