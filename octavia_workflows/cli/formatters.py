"""``-f csv`` for commands that print one object (``show``, ``submit``).

cliff offers csv only for lists; OpenStackClient users expect it on every
command that prints data.  One object becomes a header row and one value
row, like a one-row ``list -f csv``; dicts and lists are JSON-encoded.
"""

import csv
import json

from cliff.formatters import base

QUOTING = {'all': csv.QUOTE_ALL, 'minimal': csv.QUOTE_MINIMAL,
           'nonnumeric': csv.QUOTE_NONNUMERIC, 'none': csv.QUOTE_NONE}


def _cell(value):
    if hasattr(value, 'machine_readable'):
        value = value.machine_readable()
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True)
    return '' if value is None else value


class CSVShow(base.SingleFormatter):
    """One object as a CSV header row and a value row."""

    def add_argument_group(self, parser):
        group = parser.add_argument_group('CSV formatter')
        group.add_argument('--quote', choices=sorted(QUOTING),
                           dest='quote_mode', default='nonnumeric',
                           help='when to include quotes (default: '
                           'nonnumeric)')

    def emit_one(self, column_names, data, stdout, parsed_args):
        writer = csv.writer(stdout, quoting=QUOTING[parsed_args.quote_mode],
                            lineterminator='\n', escapechar='\\')
        writer.writerow(column_names)
        writer.writerow([_cell(value) for value in data])
