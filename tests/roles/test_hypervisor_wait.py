# -*- coding: utf-8 -*-
"""The hypervisor role's wait for libvirtd (roles/hypervisor/tasks/wait_libvirtd.yml),
run with ansible-playbook against libvirt sockets that misbehave as a leaving
libvirtd does: they take a connection and never answer it.

A socket of this test stands in for libvirtd's: it holds the connections it is
told to hold, unanswered, and passes the others on to the lab's libvirtd (or
holds them all). The wait must give up on a held connection after
hypervisor_libvirtd_attempt_timeout, try again, and fail with one sentence when
nothing answers within hypervisor_libvirtd_timeout."""

from __future__ import annotations

import contextlib
import re
import socket
import sys
import threading
import time

import pytest

from tests.ansible_cli import ansible

# The lab's libvirtd (scripts/lab.sh) listens here, in the machine's own mount namespace.
LAB_SOCKET = "/run/libvirt/libvirt-sock"


class HoldingSocket:
    """A Unix socket that holds its first ``hold`` connections open and unanswered,
    and passes the later ones on to ``upstream`` (or holds them too, without one)."""

    def __init__(self, path, hold, upstream=None):
        self.path = str(path)
        self.hold = hold
        self.upstream = upstream
        self.accepted = 0
        self.passed = 0
        self.held = []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(16)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                conn, _address = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            if self.upstream is None or self.accepted <= self.hold:
                self.held.append(conn)
                continue
            self.passed += 1
            up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            up.connect(self.upstream)
            for source, target in ((conn, up), (up, conn)):
                threading.Thread(target=pipe, args=(source, target), daemon=True).start()

    def close(self):
        self.listener.close()
        for conn in self.held:
            conn.close()


def pipe(source, target):
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            target.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, target):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


def wait(tmp_path, sock, total, attempt):
    """Run the role's wait against ``sock``; (completed process, output with whitespace collapsed, seconds)."""
    playbook = tmp_path / "iaastest-wait.yml"
    playbook.write_text(
        "\n".join(
            [
                "- name: Wait for libvirtd",
                "  hosts: localhost",
                "  gather_facts: false",
                "  tasks:",
                "    - name: The role's wait",
                "      ansible.builtin.include_role:",
                "        name: iaas.kvm.hypervisor",
                "        tasks_from: wait_libvirtd",
                "      vars:",
                "        hypervisor_libvirt_uri: 'qemu:///system?socket=%s'" % sock.path,
                "        hypervisor_libvirtd_timeout: %d" % total,
                "        hypervisor_libvirtd_attempt_timeout: %d" % attempt,
                "",
            ]
        )
    )
    start = time.monotonic()
    # Bounds a wait that never gives up; the role's own bounds are far below it.
    result = ansible(
        "ansible-playbook",
        *("-i", "localhost,", "-c", "local", "-v", "-e", "ansible_python_interpreter=" + sys.executable),
        playbook,
        timeout=120,
    )
    return result, " ".join((result.stdout + result.stderr).split()), time.monotonic() - start


@pytest.fixture(name="holding")
def fixture_holding(tmp_path):
    made = []

    def make(hold, upstream=None):
        made.append(HoldingSocket(tmp_path / "libvirt-sock", hold, upstream))
        return made[-1]

    yield make
    for sock in made:
        sock.close()


def test_wait_gives_up_on_a_socket_that_never_answers(tmp_path, holding):
    sock = holding(hold=0)
    result, output, seconds = wait(tmp_path, sock, total=8, attempt=3)
    print("[wait] failed after %.1f s, %d connections held: %s" % (seconds, sock.accepted, output[-600:]))
    assert result.returncode != 0, output
    assert re.search(r"localhost : ok=\d+ changed=0 unreachable=0 failed=1", output), output
    assert re.search(
        r"libvirtd did not answer at qemu:///system\?socket=\S+ within 8 s \(\d+ attempts; "
        r"the last: no answer within \d+ s\)\.",
        output,
    ), output
    # Each attempt of at most 3 s was given up and made again.
    assert sock.accepted >= 2, "expected the wait to try again after a held connection: %d" % sock.accepted


@pytest.mark.lab
def test_wait_tries_again_after_a_connection_that_is_never_answered(tmp_path, holding):
    sock = holding(hold=1, upstream=LAB_SOCKET)
    result, output, seconds = wait(tmp_path, sock, total=60, attempt=3)
    print("[wait] answered after %.1f s: %d held, %d passed on" % (seconds, sock.accepted - sock.passed, sock.passed))
    assert result.returncode == 0, output
    assert re.search(r"localhost : ok=\d+ changed=0 unreachable=0 failed=0", output), output
    assert "answered after 2 attempt(s)" in output, output
    assert sock.accepted == 2 and sock.passed == 1, (sock.accepted, sock.passed)
