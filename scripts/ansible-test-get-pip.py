"""Offline stand-in for get-pip.py, used by ansible-test when it bootstraps pip
in its sanity virtualenvs (the real download host is unreachable here).

scripts/test.sh copies it to ~/.ansible/test/cache/get_pip_24_2.py. It
bootstraps pip with ensurepip, keeps the system's CA bundle for PyPI, then
installs what ansible-test asked for.
"""

import ensurepip
import os
import subprocess
import sys

CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def main():
    with open(os.path.join(sys.prefix, "pip.conf"), "w") as conf:
        conf.write("[global]\ncert = %s\n" % CA_BUNDLE)
    ensurepip.bootstrap(upgrade=True)
    # ensurepip points PIP_CONFIG_FILE at /dev/null, which hides every pip.conf.
    os.environ.pop("PIP_CONFIG_FILE", None)
    args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
    if args:
        subprocess.check_call([sys.executable, "-m", "pip", "install", *args])


if __name__ == "__main__":
    main()
