"""``octavia-workflow audit``: the read-only fleet census.

The census itself is :mod:`octavia_workflows.cloud.census` (the
conductor exports the same figures as gauges); this module prints it.
``-f json`` and ``-f yaml`` print the census document; ``table``,
``csv`` and ``value`` print rows of (section, item, count, detail).  On
a terminal the table draws the distributions (certificate expiry,
amphora age) as small bar charts beside the numbers; elsewhere (pipes,
CI) the rows are plain.

Nothing here changes the cloud: the census only lists and gets.  Bad
input (a negative age, an image tag no active image carries, no cloud
configured) is one line and exit code 2.
"""

import json

from octavia_workflows import exceptions
from octavia_workflows.cli import base
from octavia_workflows.cloud import census as fleet

COLUMNS = ('section', 'item', 'count', 'detail')
CHART = 'chart'
#: Bars drawn with eighths of a block.
BLOCKS = ' ▏▎▍▌▋▊▉█'
CHART_WIDTH = 20
#: Ids listed in the detail of a row (the json has them all).
SHOW_IDS = 5


def bar(count, largest, width=CHART_WIDTH):
    """``count`` of ``largest`` as a bar of unicode blocks (at most
    ``width`` cells; a non-zero count shows at least a sliver)."""
    if not largest or not count:
        return ''
    eighths = max(1, round(width * 8 * count / largest))
    full, part = divmod(eighths, 8)
    return '█' * full + (BLOCKS[part] if part else '')


def _minutes(text):
    try:
        value = float(text)
    except ValueError:
        raise exceptions.UserError(
            f'--older-than-minutes: not a number: {text!r}') from None
    if value < 0 or value != value or value == float('inf'):
        raise exceptions.UserError(
            f'--older-than-minutes must be >= 0 (got {text})')
    return value


def _ids(ids):
    shown = ', '.join(ids[:SHOW_IDS])
    return shown + (f' (+{len(ids) - SHOW_IDS} more)'
                    if len(ids) > SHOW_IDS else '')


def _image_detail(row, tag):
    if not row['id']:
        return 'no image recorded'
    if not row['known']:
        return f'{row["id"]}: unknown to the image service'
    parts = [row['id']]
    if row['tags']:
        parts.append('tags ' + ','.join(row['tags']))
    if row['age_days'] is not None:
        parts.append(f'{row["age_days"]:g} days old')
    parts.append(f'{row["load_balancers"]} load balancers')
    if row['newest']:
        parts.append(f'newest tagged {tag}')
    return ', '.join(parts)


def rows(doc):
    """Plain rows (section, item, count, detail, distribution?) of a
    census; the last field says whether a chart belongs beside it."""
    out = []
    lbs, amps = doc['load_balancers'], doc['amphorae']
    out.append(('load_balancers', 'total', lbs['total'], '', False))
    for key, label in (('by_provisioning_status', 'provisioning_status'),
                       ('by_operating_status', 'operating_status'),
                       ('by_topology', 'topology')):
        for value, count in lbs[key].items():
            out.append(('load_balancers', f'{label} {value}', count, '',
                        False))
    out.append(('amphorae', 'total', amps['total'], '', False))
    for status, count in amps['by_status'].items():
        out.append(('amphorae', f'status {status}', count, '', False))
    images = doc['images']
    for row in images['by_image']:
        out.append(('images', row['name'] or row['id'] or 'none',
                    row['amphorae'], _image_detail(row, images['tag']),
                    False))
    if images['newest'] is not None:
        out.append(('images', f'not on the newest image tagged '
                    f'{images["tag"]}', images['amphorae_not_newest'],
                    f'{images["load_balancers_not_newest"]} load balancers; '
                    f'newest: {images["newest"]["name"] or ""} '
                    f'{images["newest"]["id"]}', False))
    for row in amps['by_age']:
        if row['bucket'] != fleet.UNKNOWN or row['count']:
            out.append(('amphora_age', row['bucket'], row['count'], '',
                        True))
    certs = doc['certificates']
    for row in certs['by_expiry']:
        if row['bucket'] != fleet.UNKNOWN or row['count']:
            out.append(('certificate_expiry', row['bucket'], row['count'],
                        '', True))
    if certs['soonest']:
        out.append(('certificate_expiry', 'soonest', '',
                    f'{certs["soonest"]} (amphora {certs["soonest_amphora"]})',
                    False))
    stuck = doc['stuck']
    minutes = fleet.plain_number(stuck['older_than_minutes'])
    out.append(('stuck', f'PENDING_* for {minutes}+ minutes',
                stuck['count'], _ids([s['id'] for s in
                                      stuck['load_balancers']]), False))
    for key, status in (('error_amphorae', fleet.ERROR),
                        ('failover_stopped_amphorae',
                         fleet.FAILOVER_STOPPED)):
        out.append(('amphorae', f'in {status}', len(doc[key]),
                    _ids(doc[key]), False))
    for finding in doc['findings']:
        out.append(('finding', finding['command'], finding['count'],
                    finding['what'], False))
    for note in doc['notes']:
        out.append(('note', '', '', note, False))
    return out


def with_charts(plain):
    """The rows with a chart column after the count: a bar for each
    distribution row, scaled to the largest count of its section."""
    largest = {}
    for section, _, count, _, chart in plain:
        if chart and count:
            largest[section] = max(largest.get(section, 0), count)
    return [(section, item, count,
             bar(count, largest.get(section)) if chart else '', detail)
            for section, item, count, detail, chart in plain]


class Audit(base.Lister):
    """Read-only census of the fleet, with the runbook for each finding.

    Load balancers by provisioning and operating status and topology;
    amphorae by status, by image (name, tags, age, and how many are not
    on the newest image carrying the tag Octavia boots from), by age;
    certificate expiry (expired, < 7 days, < 30 days, later); load
    balancers PENDING_* for longer than --older-than-minutes; amphorae
    in ERROR and FAILOVER_STOPPED.  Every finding names the command that
    addresses it (preview it with --dry-run).  "-f json" prints the
    whole census.  Nothing in the cloud is changed.
    """

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument(
            '--older-than-minutes', type=str, default='60', metavar='N',
            help='a PENDING_* load balancer not updated for this long is '
            'stuck (default: 60, repair-stuck\'s default)')
        parser.add_argument(
            '--image-tag', default=None, metavar='TAG',
            help='the tag Octavia boots amphorae from ([controller_worker] '
            'amp_image_tag); default: [fleet] image_tag')
        return parser

    def take_action(self, parsed_args):
        from octavia_workflows import cloud

        minutes = _minutes(parsed_args.older_than_minutes)
        manager = self.app.manager
        explicit = parsed_args.image_tag is not None
        tag = (parsed_args.image_tag if explicit
               else manager.conf.fleet.image_tag)
        if explicit and not tag.strip():
            raise exceptions.UserError('--image-tag must not be empty')
        name = manager.cloud_name
        if not name:
            raise exceptions.ConfigError(
                'audit needs a cloud: pass --os-cloud NAME or set [cloud] '
                'name')
        self.census = fleet.take(cloud.connect(name), tag, explicit=explicit,
                                 older_than_minutes=minutes)
        plain = rows(self.census)
        if parsed_args.formatter == 'table' and self.app.stdout.isatty():
            return COLUMNS[:3] + (CHART,) + COLUMNS[3:], with_charts(plain)
        return COLUMNS, [row[:4] for row in plain]

    def produce_output(self, parsed_args, column_names, data):
        fmt = parsed_args.formatter
        if fmt in ('json', 'yaml'):
            if fmt == 'json':
                text = json.dumps(self.census, indent=2, sort_keys=True)
                self.app.stdout.write(text + '\n')
            else:
                import yaml

                self.app.stdout.write(yaml.safe_dump(self.census,
                                                     sort_keys=True))
            return base.EXIT_OK
        return super().produce_output(parsed_args, column_names, data)
