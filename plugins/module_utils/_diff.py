# -*- coding: utf-8 -*-
# Copyright: iaas.kvm contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A tracker of (field, before, after) that every module turns into its diff."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

MASK = "********"


class DifferenceTracker:
    """Record the managed fields of an object before and after a change.

    ``add(field, before, after)`` records one field; ``changed`` tells whether
    any recorded field differs; ``diff()`` returns the ``{'before': ...,
    'after': ...}`` mapping that Ansible prints in diff mode. Fields marked
    ``secret`` are masked in the diff but still compared.
    """

    def __init__(self):
        self._fields = []
        self._index = {}

    def add(self, field, before, after, secret=False, compare=True):
        """Record ``field``; ``compare=False`` shows it without counting it as a change."""
        entry = dict(
            field=field,
            before=copy.deepcopy(before),
            after=copy.deepcopy(after),
            secret=secret,
            compare=compare,
        )
        if field in self._index:
            self._fields[self._index[field]] = entry
        else:
            self._index[field] = len(self._fields)
            self._fields.append(entry)

    def has(self, field):
        return field in self._index

    def differs(self, field):
        entry = self._fields[self._index[field]] if field in self._index else None
        return bool(entry and entry["compare"] and entry["before"] != entry["after"])

    @property
    def changed(self):
        return any(e["compare"] and e["before"] != e["after"] for e in self._fields)

    def changed_fields(self):
        return [e["field"] for e in self._fields if e["compare"] and e["before"] != e["after"]]

    def _side(self, side, only_changed):
        result = {}
        for entry in self._fields:
            if only_changed and not (entry["compare"] and entry["before"] != entry["after"]):
                continue
            value = entry[side]
            if entry["secret"] and value is not None:
                value = MASK
            result[entry["field"]] = value
        return result

    def diff(self, only_changed=False):
        """The ``diff`` return value (``before``/``after`` dictionaries)."""
        return dict(before=self._side("before", only_changed), after=self._side("after", only_changed))

    def text_diffs(self, only_changed=False):
        """The diff as a list of text diffs, one a field whose values are texts
        (documents, files): ``{before_header, after_header, before, after}``,
        which Ansible shows line by line. A missing text (None) is empty."""
        before, after = self._side("before", only_changed), self._side("after", only_changed)
        return [
            dict(before_header=field, after_header=field, before=before[field] or "", after=after[field] or "")
            for field in before
        ]


def state_diff(before, after):
    """Diff for a whole object that appears or disappears (``None`` is absent)."""
    return dict(before=before if before is not None else {}, after=after if after is not None else {})
