# -*- coding: utf-8 -*-
"""The collection as a user gets it: the tarball ``ansible-galaxy collection
build`` makes from this checkout, built once per session.

Every command runs from a temporary directory with ``ANSIBLE_CONFIG`` pointing
at an empty file and no ``ANSIBLE_*`` or ``PYTHONPATH`` of the caller, so
neither the checkout's ``ansible.cfg`` (whose ``collections/`` link leads back
to the checkout) nor anything else of the caller decides where Ansible looks.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
GALAXY = yaml.safe_load((REPO / "galaxy.yml").read_text())
TARBALL_NAME = "%s-%s-%s.tar.gz" % (GALAXY["namespace"], GALAXY["name"], GALAXY["version"])


def isolated_env(workdir: Path, collections_path: Path) -> dict:
    """The environment of a user with an empty ansible.cfg and only ``collections_path``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_") and k != "PYTHONPATH"}
    config = workdir / "empty-ansible.cfg"
    config.touch()
    env.update(
        ANSIBLE_CONFIG=str(config),
        ANSIBLE_COLLECTIONS_PATH=str(collections_path),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        PATH="%s%s%s" % (BIN, os.pathsep, env.get("PATH", "")),
    )
    return env


def run(command, cwd: Path, env: dict, timeout=300, fails=False):
    """Run ``command``; fail the test with its output when it fails (or, with
    ``fails=True``, when it succeeds)."""
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if fails:
        if done.returncode == 0:
            raise AssertionError("%s was expected to fail:\n%s" % (" ".join(map(str, command)), done.stdout))
    elif done.returncode != 0:
        raise AssertionError(
            "%s failed (rc %d):\n%s\n%s" % (" ".join(map(str, command)), done.returncode, done.stdout, done.stderr)
        )
    return done


def warnings_in(done) -> list:
    """The warning and deprecation lines a command printed."""
    return [line for line in (done.stdout + done.stderr).splitlines() if "[WARNING]" in line or "[DEPRECATION" in line]


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """``(tarball, build output)`` of ``ansible-galaxy collection build`` of the checkout."""
    work = tmp_path_factory.mktemp("iaastest-build")
    env = isolated_env(work, work / "no-collections")
    done = run([BIN / "ansible-galaxy", "collection", "build", "--output-path", work / "dist", REPO], work, env)
    tarball = work / "dist" / TARBALL_NAME
    assert tarball.is_file(), "ansible-galaxy wrote no %s: %s" % (TARBALL_NAME, done.stdout)
    return tarball, done


@pytest.fixture(scope="session")
def installed(built, tmp_path_factory):
    """``(collection directory, environment)``: the tarball installed with
    ``ansible-galaxy collection install`` into the empty directory ``site``, and
    the environment that has only that directory on the collections path.

    Not into a directory called ``collections``: Ansible also looks in the
    ``collections`` directory beside a playbook, which would hide what the
    collections path does."""
    tarball, _done = built
    work = tmp_path_factory.mktemp("iaastest-install")
    site = work / "site"
    env = isolated_env(work, site)
    done = run([BIN / "ansible-galaxy", "collection", "install", "-p", site, tarball], work, env)
    assert not warnings_in(done), done.stdout + done.stderr
    return site / "ansible_collections" / "iaas" / "kvm", env
