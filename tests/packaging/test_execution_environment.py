# -*- coding: utf-8 -*-
"""The example execution environment (extensions/ee) gives ansible-builder a
build context that holds this collection, and the collection tells
ansible-builder its dependencies (meta/execution-environment.yml).

``ansible-builder create`` writes the context (a Containerfile and ``_build/``)
without building an image: these machines have no container runtime. The test
then does, with the context's own files and scripts, the two steps of the image
build that decide what goes in: the galaxy stage's ``ansible-galaxy collection
install -r requirements.yml`` (run in ``_build``, the stage's working
directory) and the builder stage's ``introspect.py``, which collects the
installed collections' Python and system requirements. bindep then says which
system packages an RPM-based image gets (ansible-builder's images are).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from bindep.depends import Depends

from tests.packaging.conftest import BIN, REPO, TARBALL_NAME, isolated_env, run, warnings_in

EE_DIR = REPO / "extensions" / "ee"
# The platform profiles bindep gives an RPM-based image (Fedora, CentOS Stream, RHEL/UBI).
RPM_PLATFORM = ["platform:rpm", "platform:redhat", "platform:centos", "platform:dnf"]


def create_context(tarball, work: Path) -> Path:
    """Run ``ansible-builder create`` on a copy of extensions/ee holding ``tarball``,
    as the definition's comment tells a user to; return the build context."""
    ee = work / "ee"
    shutil.copytree(EE_DIR, ee, ignore=shutil.ignore_patterns("collections"))
    (ee / "collections").mkdir()
    shutil.copy(tarball, ee / "collections")
    context = work / "context"
    env = isolated_env(work, work / "no-collections")
    done = run(
        [
            BIN / "ansible-builder",
            "create",
            "-f",
            ee / "execution-environment.yml",
            "-c",
            context,
            "--output-filename",
            "Containerfile",
        ],
        work,
        env,
    )
    assert "No matches" not in done.stdout + done.stderr, done.stdout  # a file the definition copies is missing
    return context


def test_builder_context_installs_the_collection_with_its_requirements(built, tmp_path):
    tarball, _done = built
    context = create_context(tarball, tmp_path)
    containerfile = (context / "Containerfile").read_text()
    # The base image is the user's choice: a build argument.
    assert 'ARG EE_BASE_IMAGE="' in containerfile
    assert "FROM $EE_BASE_IMAGE AS base" in containerfile
    assert "ansible-galaxy collection install $ANSIBLE_GALAXY_CLI_COLLECTION_OPTS -r requirements.yml" in containerfile
    assert "introspect.py introspect" in containerfile
    assert (context / "_build" / "collections" / TARBALL_NAME).is_file()

    # The galaxy stage: WORKDIR /build holds _build.
    installed = tmp_path / "usr-share-ansible-collections"
    env = isolated_env(tmp_path, installed)
    done = run(
        [BIN / "ansible-galaxy", "collection", "install", "-r", "requirements.yml", "--collections-path", installed],
        context / "_build",
        env,
    )
    assert not warnings_in(done), done.stdout + done.stderr
    collection = installed / "ansible_collections" / "iaas" / "kvm"
    assert (collection / "meta" / "execution-environment.yml").is_file()

    # The builder stage: the context's introspect.py over what the galaxy stage installed.
    pip_file = tmp_path / "requirements.txt"
    bindep_file = tmp_path / "bindep.txt"
    run(
        [
            sys.executable,
            context / "_build" / "scripts" / "introspect.py",
            "introspect",
            "--write-pip=%s" % pip_file,
            "--write-bindep=%s" % bindep_file,
            installed,
        ],
        tmp_path,
        env,
    )
    python = {line.split("#")[0].strip() for line in pip_file.read_text().splitlines() if line.strip()}
    # PyYAML is in requirements.txt too; introspect leaves it out (every image has it).
    assert python == {"libvirt-python>=6.0", "lxml>=4.6", "pycdlib>=1.11"}

    # What bindep installs from that file in an RPM-based image: at run time the
    # default profile, while wheels are built the compile profile. The packages of
    # the hypervisors, the lab, the image builder and the tests stay out.
    depends = Depends(bindep_file.read_text())
    runtime = set(depends.list_all_packages(depends.active_rules(["default", *RPM_PLATFORM])))
    compile_time = set(depends.list_all_packages(depends.active_rules(["compile", *RPM_PLATFORM])))
    assert runtime == {"python3-libvirt", "python3-lxml", "python3-pyyaml"}
    assert {"gcc", "libvirt-devel", "pkgconf-pkg-config", "python3-devel"} <= compile_time
    assert not {p for p in runtime | compile_time if p.startswith(("qemu", "libvirt-daemon", "edk2"))}
