"""Offline stand-in for the pip bootstrap script that `ansible-test --venv` downloads.

ansible-test creates each sanity virtualenv without pip and fetches `get-pip-<ver>.py` from
its CI file host to install one. Machines that reach only a package index cannot fetch it,
so scripts/sanity.sh places this file in ansible-test's cache instead: it bootstraps pip from
the interpreter's own `ensurepip` and then installs the pinned versions ansible-test asked
for from the package index, which is what the original script does.
"""

import subprocess
import sys

# In a child process: ensurepip.bootstrap() blanks PIP_* settings and the pip config of the
# process that calls it, and the install below needs the machine's pip configuration.
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade"])
# get-pip.py understands these two switches; `pip install` does not.
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "--quiet", *args]))
