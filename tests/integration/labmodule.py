# -*- coding: utf-8 -*-
"""Run a module of the collection inside the lab namespace, and serve files
there over HTTP.

127.0.0.1 inside the namespace ``iaas-lab`` is not the machine's, so a test
that downloads from a server bound there must run the module in the namespace
too. The module runs as Ansible runs it on a host: its file executed by Python
with the arguments in a JSON file (``ANSIBLE_MODULE_ARGS``), the collection on
PYTHONPATH.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import ModuleResult, check_outcome
from tests.integration.conftest import LAB_NETNS, REPO, lab_run

COLLECTIONS = REPO / "collections"
MODULES = COLLECTIONS / "ansible_collections" / "iaas" / "kvm" / "plugins" / "modules"


def module_process(module: str, args: dict, check_mode=False, diff=False, timeout=600, env=None):
    """Run ``iaas.kvm.<module>`` as its own process inside the lab namespace, as
    Ansible runs it on a host; return the finished process (``env`` adds to the
    environment)."""
    margs = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="iaastest-args-", delete=False) as handle:
        json.dump(dict(ANSIBLE_MODULE_ARGS=margs), handle)
    try:
        environment = dict(os.environ, PYTHONPATH=str(COLLECTIONS), **(env or {}))
        return lab_run(
            [sys.executable, str(MODULES / (module + ".py")), handle.name],
            check=False,
            timeout=timeout,
            env=environment,
        )
    finally:
        os.unlink(handle.name)


def run_module_in_lab(module: str, args: dict, check_mode=False, diff=False, timeout=600, fails=False) -> dict:
    """Run ``iaas.kvm.<module>`` inside the lab namespace; return the JSON it printed.
    As with ``tests.conftest.run_module``, the test fails on an unexpected failure
    (or on a success where ``fails=True`` expects a failure)."""
    done = module_process(module, args, check_mode=check_mode, diff=diff, timeout=timeout)
    text = done.stdout.strip()
    if "{" not in text:
        raise AssertionError("%s printed no JSON (rc %d): %s %s" % (module, done.returncode, text, done.stderr))
    return check_outcome(module, ModuleResult(json.loads(text[text.index("{") :])), fails)


@contextmanager
def lab_http_server(directory: Path, timeout=30):
    """``python3 -m http.server`` bound to 127.0.0.1 inside the lab namespace,
    serving ``directory``; yields its base URL and stops it afterwards."""
    server = [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", str(directory)]
    proc = subprocess.Popen(
        ["ip", "netns", "exec", LAB_NETNS, *server],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # "Serving HTTP on 127.0.0.1 port 40123 (http://127.0.0.1:40123/) ..."
        if "port" not in line:
            raise AssertionError("http.server did not start in the lab namespace: %r" % line)
        port = int(line.split("port")[1].split()[0])
        url = "http://127.0.0.1:%d" % port
        _wait_for_port(port, timeout)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _port_open(port):
    probe = "import socket; socket.create_connection(('127.0.0.1', %d), 2).close()" % port
    return lab_run([sys.executable, "-c", probe], check=False).returncode == 0


def _wait_for_port(port, timeout):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if _port_open(port):
            return
        time.sleep(0.2)
    raise AssertionError("nothing listens on 127.0.0.1:%d in the lab namespace" % port)
