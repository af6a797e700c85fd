"""Maintenance windows: parsing, open/shut arithmetic, and a job that
starts targets only inside its window (on a fake cloud, with the clock
moved by the test)."""

import datetime

import pytest

from octavia_workflows import exceptions, states, windows, workflow
from octavia_workflows.cli import plan as plan_cli
from unit import fakecloud

UTC = windows.UTC


def at(day, hour, minute=0):
    return datetime.datetime(2026, 12, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize('text,open_at,shut_at', [
    # 2026-12-05 is a Saturday
    ('Sat-Sun 01:00-05:00', at(5, 1), at(5, 5)),
    ('Sat-Sun 01:00-05:00', at(6, 4, 59), at(7, 1)),
    ('Fri 22:00-02:00', at(5, 1, 59), at(5, 2)),      # crosses midnight
    ('daily 00:30-03:00', at(2, 0, 30), at(2, 3)),
    ('00:30-03:00', at(3, 2), at(3, 3, 30)),
    ('Fri-Mon 10:00-11:00', at(7, 10, 30), at(8, 10, 30)),   # wraps
    ('Mon-Fri 22:00-04:00 Europe/Berlin', at(2, 21), at(2, 20, 59)),
])
def test_open_and_shut(text, open_at, shut_at):
    window = windows.parse(text)
    assert window.is_open(open_at)
    assert not window.is_open(shut_at)
    assert window.next_open(open_at) == open_at
    assert window.next_open(shut_at) > shut_at


def test_next_open_and_length():
    window = windows.parse('Sat-Sun 01:00-05:00')
    assert window.next_open(at(2, 12)) == at(5, 1)          # Wednesday
    assert window.closes_at(at(5, 2)) == at(5, 5)
    assert window.seconds == 4 * 3600
    assert windows.parse('Fri 22:00-02:00').seconds == 4 * 3600
    berlin = windows.parse('Mon-Fri 22:00-04:00 Europe/Berlin')
    assert berlin.describe(berlin.next_open(at(2, 12))) == \
        '2026-12-02 22:00 CET'


@pytest.mark.parametrize('text', [
    '', 'Sat-Sun', 'Xyz 01:00-02:00', '01:00-01:00', '25:00-02:00',
    '01:00-02:60', 'Mon 01:00-02:00 Mars/Base', 'Mon Tue 01:00-02:00',
    'Mon 01:00-02:00 UTC extra', '1-2',
])
def test_malformed_windows_are_one_line_errors(text):
    with pytest.raises(exceptions.InvalidParameter) as caught:
        windows.parse(text)
    message = str(caught.value)
    assert message.startswith('parameter window: ') and '\n' not in message


def test_every_paced_runbook_takes_a_window():
    for name in ('rotate-images', 'failover-amphorae', 'rotate-certificates',
                 'evacuate-host', 'cleanup-node', 'reconfigure-amphorae'):
        assert 'window' in {p.name for p in workflow.get(name).params}
    flow = workflow.get('rotate-images')
    assert flow.validate({'image_tag': 'a', 'window': ' daily 01:00-02:00 '
                          })['window'] == 'daily 01:00-02:00'
    with pytest.raises(exceptions.InvalidParameter):
        flow.validate({'image_tag': 'a', 'window': 'Sat-Sun'})


def test_the_plan_says_what_the_window_holds():
    window = windows.parse('Sat-Sun 01:00-05:00')
    note = plan_cli.window_note(window, {'concurrency': 2}, 1000,
                                (60.0, 'abcdef1234'), now=at(2, 12))
    assert 'opens at 2026-12-05 01:00 UTC, 4 h each time' in note
    assert 'holds about 480 targets: 1000 planned need 3 windows' in note
    assert 'no earlier successful job' in plan_cli.window_note(
        window, {}, 10, None, now=at(5, 2))


def test_targets_start_only_inside_the_window(tmp_path, monkeypatch):
    fakecloud.fast(monkeypatch)
    clock = [at(2, 0, 59)]
    monkeypatch.setattr(windows, 'now', lambda: clock[0])
    cloud = fakecloud.Cloud()
    lbs = [cloud.add_lb('SINGLE') for _ in range(2)]
    job = fakecloud.Harness(fakecloud.store(tmp_path), cloud,
                            workflow.get('rotate-images'),
                            {'image_tag': 'amphora',
                             'window': 'daily 01:00-01:10'})
    job.plan()
    first, second = job.items()
    context = job.context()

    def one_pass(item):
        try:
            job.steps(item).execute(context)
        except exceptions.NotYet:
            pass
        return job.records.get_target(job.job_id, item['target'])

    # shut: nothing starts, the record says when it opens
    row = one_pass(first)
    assert row['state'] == states.PENDING
    assert row['details']['waiting'] == (
        'waiting for maintenance window daily 01:00-01:10 (opens at '
        '2026-12-02 01:00 UTC)')
    assert sum(cloud.calls.values()) == 0
    # open: the first target starts and its failover is called
    clock[0] = at(2, 1, 0)
    for _ in range(3):
        row = one_pass(first)
    assert row['state'] in (states.RUNNING, states.DONE)
    assert sum(cloud.calls.values()) == 1
    assert 'waiting' not in row['details'] or not row['details']['waiting']
    # it closes while the first is in flight: the first finishes, the
    # second does not start
    clock[0] = at(2, 1, 10)
    for _ in range(20):
        if one_pass(first)['state'] == states.DONE:
            break
    assert job.records.get_target(job.job_id, lbs[0])['state'] == states.DONE
    assert one_pass(second)['state'] == states.PENDING
    assert sum(cloud.calls.values()) == 1
    # the next day's window: the second goes on by itself
    clock[0] = at(3, 1, 5)
    for _ in range(20):
        if one_pass(second)['state'] == states.DONE:
            break
    assert job.records.get_target(job.job_id, lbs[1])['state'] == states.DONE
    assert sum(cloud.calls.values()) == 2
