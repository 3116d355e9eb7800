# -*- coding: utf-8 -*-
"""The role READMEs agree with the roles: the variable table of each lists
exactly the options of the role's main entry point in meta/argument_specs.yml,
and the example plays are YAML."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLES = ["hypervisor", "image", "vm"]


def readme(role):
    return (REPO / "roles" / role / "README.md").read_text()


def table_variables(text):
    """The names in the first column of the table under ``## Variables``."""
    section = text.split("\n## Variables\n", 1)[1].split("\n## ", 1)[0]
    return [m.group(1) for m in re.finditer(r"^\| `([a-z0-9_]+)` \|", section, re.MULTILINE)]


@pytest.mark.parametrize("role", ROLES)
def test_variable_table_lists_the_argument_spec(role):
    spec = yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())
    options = list(spec["argument_specs"]["main"]["options"])
    listed = table_variables(readme(role))
    missing, unknown = set(options) - set(listed), set(listed) - set(options)
    assert not missing, "roles/%s/README.md does not list %s" % (role, ", ".join(sorted(missing)))
    assert not unknown, "roles/%s/README.md lists %s, which the argument spec lacks" % (
        role,
        ", ".join(sorted(unknown)),
    )
    assert len(listed) == len(set(listed))


@pytest.mark.parametrize("role", ROLES)
def test_example_plays_are_yaml(role):
    blocks = re.findall(r"```yaml\n(.*?)```", readme(role), re.DOTALL)
    assert blocks
    for block in blocks:
        plays = yaml.safe_load(block)
        assert isinstance(plays, list)
        assert all("hosts" in play for play in plays)
