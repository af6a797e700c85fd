"""The steps of ``repair-stuck``: re-check that the load balancer is
still stuck and no Octavia worker owns it (:class:`Start`), repair it
once (:class:`Repair`), wait for it to settle (:class:`Wait`); and the
flow factory.
"""

import datetime

from octavia_workflows import exceptions, states
from octavia_workflows.cloud import octavia_db
from octavia_workflows.flows.repair_stuck import DELETING, NAME, busy, database
from octavia_workflows.machinery import inventory, lanes, retry, steps


class Start(steps.StartTarget):
    """Re-check: still PENDING_*, no Octavia job about it; the "before"
    snapshot; with apply=false, report what would be done and stop."""

    def recheck(self, context, cloud):
        lb_id = self.details['lb']
        with database(context) as db:
            row = db.get_load_balancer(lb_id)
        if row is None or row['provisioning_status'] == 'DELETED':
            return 'load balancer no longer exists', None
        status = row['provisioning_status']
        if status not in octavia_db.PENDING:
            return f'no longer stuck: {status} now', None
        why = busy(context).get(lb_id)
        if why:
            return why, None
        amps = cloud.list_amphorae(loadbalancer_id=lb_id)
        before = inventory.snapshot(amps)
        before.update(provisioning_status=status,
                      operating_status=row.get('operating_status'),
                      updated_at=octavia_db.isoformat(row.get('updated_at')))
        if not context.params.get('apply'):
            what = ('delete it' if self.details.get('status') == DELETING
                    else 'fail it over')
            return (f'would reset it to ERROR and {what} (apply=false): '
                    f'{status} for {self.details.get("age")} at planning'),\
                None
        return None, before


class Repair(steps.ActOnTarget):
    """The reset (compare-and-set), then the failover or the delete; each
    exactly once (see the module docstring)."""

    def deleting(self):
        return self.details.get('status') == DELETING

    def execute(self, context):
        run = self.lifecycle(context)
        record = run.running()
        if record is None or record.requested_at:
            return None
        cloud = context.cloud()
        earlier = bool(record.intent)
        try:
            with database(context) as db:
                if not record.details.get('reset_at'):
                    refused = self.reset(context, run, record, db)
                    if refused:
                        return run.fail(refused)
                    record = run.running()
                if earlier and self.already_done(db, record):
                    run.requested(recovered=True)
                    return None
            if not earlier:
                run.intend()
            context.fence()
            self.call(cloud, record)
        except exceptions.CloudNotFound as exc:
            if self.deleting():
                run.requested(recovered=earlier)    # gone: deleted
                return None
            return run.fail(f'gone after its reset to ERROR: {exc}')
        except exceptions.CloudConflict as exc:
            if earlier:
                run.requested(recovered=True)
                return None
            return run.fail(f'reset to ERROR, but Octavia refused the '
                            f'{self.verb()}: {exc}')
        except exceptions.CloudError as exc:
            return retry.retry_later_or(context, exc, run.fail)
        run.requested()
        return None

    def verb(self):
        return 'delete' if self.deleting() else 'failover'

    def reset(self, context, run, record, db):
        """The compare-and-set; None when the row is ERROR by our hand,
        else why it was refused."""
        lb_id = self.details['lb']
        stamp = record.details.get('reset_stamp')
        if stamp is None:
            # one second back: no later write by Octavia carries it
            stamp = octavia_db.isoformat(
                octavia_db.utcnow() - datetime.timedelta(seconds=1))
            run.note(reset_stamp=stamp)
        context.fence()
        seen = self.details.get('status')
        seen_at = self.details.get('seen_updated_at')
        if not db.reset_to_error(lb_id, seen, octavia_db.parse(seen_at),
                                 octavia_db.parse(stamp)):
            row = db.get_load_balancer(lb_id)
            if not self.ours(row, stamp):
                now = ('gone' if row is None else
                       f'{row["provisioning_status"]} updated '
                       f'{octavia_db.isoformat(row.get("updated_at"))}')
                return (f'compare-and-set refused: the load balancer changed '
                        f'after planning ({seen} updated {seen_at} then, '
                        f'{now} now); nothing changed')
        run.note(reset_at=octavia_db.isoformat(octavia_db.utcnow()))
        return None

    @staticmethod
    def ours(row, stamp):
        """The row is as our reset left it: ERROR with our stamp."""
        return (row is not None
                and row['provisioning_status'] == octavia_db.ERROR
                and row.get('updated_at') == octavia_db.parse(stamp))

    def already_done(self, db, record):
        """After our reset, any change to the row is our API call."""
        row = db.get_load_balancer(self.details['lb'])
        return not self.ours(row, record.details.get('reset_stamp'))

    def call(self, cloud, record):
        if self.deleting():
            cloud.delete_load_balancer(self.details['lb'], cascade=True)
        else:
            cloud.failover_load_balancer(self.details['lb'])


class Wait(steps.WaitForTarget):
    """Short checks until Octavia is done; verify the outcome."""

    def verify(self, context, cloud, record, lb):
        status = lb.get('provisioning_status')
        if self.details.get('status') == DELETING:
            if status == 'DELETED':
                return states.DONE, None, {'provisioning_status': status}
            return states.FAILED, f'{status} after its delete', None
        if status == 'DELETED':
            return states.FAILED, 'the load balancer was deleted', None
        after = inventory.snapshot(cloud.list_amphorae(
            loadbalancer_id=lb['id']))
        if status != inventory.ACTIVE:
            return (states.FAILED, f'the load balancer is {status} after '
                    f'its failover', after)
        kept = sorted(set((record.before or {}).get('amphorae') or [])
                      & set(after['amphorae']))
        if kept:
            return (states.FAILED,
                    f'amphorae not replaced: {", ".join(kept)}', after)
        if not after['amphorae']:
            return states.FAILED, 'no amphora in service after failover', \
                after
        return states.DONE, None, after


def repair_stuck_flow(params, targets):
    """Factory: at most ``concurrency`` lanes, one atom each, however
    many load balancers (:mod:`octavia_workflows.machinery.lanes`)."""
    return lanes.build(NAME, params, targets,
                       lanes.steps_of(NAME, Start, Repair, Wait))
