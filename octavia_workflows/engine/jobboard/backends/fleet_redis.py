"""Fleet coordination on Redis: budget, locks and leases in Lua scripts.

Keys, under the board's namespace ``NS``:

``NS.fleet.budget``
    A sorted set: one member per slot holder (``<job id>/<target>``),
    scored with the time (ms, the server's clock) its entry expires.
``NS.fleet.lock.<key>``
    The job id holding the lock on ``<key>`` (``lb:<id>``, ``host:<name>``),
    with a TTL.
``NS.fleet.released.<key>``
    When the lock was last released (ms), kept for a day: a conductor
    that read the cloud before that time reads again.
``NS.fleet.lease.<name>``
    The holder of a named lease, with a TTL.
``NS.fleet.epoch``
    The epoch mark, no TTL: until when (ms) nothing new is granted
    after the server lost its data (below).

Taking (locks and a slot, all or nothing) and giving back are one script
call each, so a target costs two round trips however many keys it
locks.  Every entry expires after the claim expiry unless renewed with
the claim (:meth:`RedisFleet.fleet_keep`): a SIGKILLed conductor's slots
and locks come back within that time.  The scripts read the server's
clock, so conductors' clocks do not matter.

A restart: with its data (``appendonly yes``) nothing changes; holders
renew at their next keep-alive after the reconnect, a holder that died
meanwhile gives back one claim expiry after its last renewal.  Without
its data (no persistence, a new data directory) the budget is empty
while holders may still be at work: a run whose claim went with the data
stops at its next fenced step, a holder that keeps renewing re-adds its
slot (``fleet_keep`` re-adds what is missing).  So a budgeted take that
finds no epoch mark sets it to one claim expiry after the server started
(``INFO`` uptime) and grants nothing before then (refused as spent
budget); a renewal that holds slots and finds no mark sets it to one
claim expiry from now.  A new board on a server up for longer than that
is not held back; a forced take (a target in flight) never is.  Not
covered: data lost without a restart (``FLUSHALL``, the mark evicted)
is noticed at the first renewal only, and locks are not held back.

Failures: a Redis error is translated by the driver's ``translate()``
into BackendUnavailable; nothing is half-taken (a script is atomic).
"""

from octavia_workflows.engine.jobboard import base

# KEYS[1] budget; KEYS[2..n+1] locks; KEYS[n+2..2n+1] released marks;
# KEYS[2n+2] the epoch mark.  ARGV: job id, member, budget, ttl ms,
# force ('1'/'0'), n.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(ARGV[6])
for i = 2, n + 1 do
    local holder = redis.call('GET', KEYS[i])
    if holder and holder ~= ARGV[1] then
        return {0, 'locked', holder, KEYS[i], ''}
    end
end
local budget = tonumber(ARGV[3])
if budget > 0 then
    local ttl = tonumber(ARGV[4])
    local settled = redis.call('GET', KEYS[2 * n + 2])
    if not settled then
        -- No epoch mark: a new board, or a server that lost its data.
        -- Holders that survived re-assert their slots at their next
        -- renewal: until one claim expiry after the server started,
        -- nothing new is granted.
        local info = redis.call('INFO', 'server')
        local up = tonumber(string.match(info, 'uptime_in_seconds:(%d+)'))
        settled = now - (up or 0) * 1000 + ttl
        redis.call('SET', KEYS[2 * n + 2], tostring(settled))
    end
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
    if ARGV[5] ~= '1' and not redis.call('ZSCORE', KEYS[1], ARGV[2]) then
        if now < tonumber(settled) then
            return {0, 'budget', tostring(budget), '', ''}
        end
        local used = redis.call('ZCARD', KEYS[1])
        if used >= budget then
            return {0, 'budget', tostring(used), '', ''}
        end
    end
    redis.call('ZADD', KEYS[1], now + ttl, ARGV[2])
end
local released = ''
for i = 2, n + 1 do
    redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[4])
    local mark = redis.call('GET', KEYS[n + i])
    if mark and (released == '' or tonumber(mark) > tonumber(released)) then
        released = mark
    end
end
return {1, '', '', '', released}
"""

# KEYS as for _TAKE; ARGV: job id, member, n.
_GIVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(ARGV[3])
redis.call('ZREM', KEYS[1], ARGV[2])
for i = 2, n + 1 do
    if redis.call('GET', KEYS[i]) == ARGV[1] then
        redis.call('DEL', KEYS[i])
        redis.call('SET', KEYS[n + i], tostring(now), 'EX', 86400)
    end
end
return 1
"""

# KEYS[1] budget; KEYS[2] the epoch mark; KEYS[3..] locks.  ARGV: ttl
# ms, m, then the m members to re-score, then the job id of each lock.
_KEEP = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local members = tonumber(ARGV[2])
if members > 0 and not redis.call('GET', KEYS[2]) then
    -- We hold slots and the server has no epoch mark: it lost its data.
    -- Nothing new is granted for one claim expiry, while the holders
    -- re-assert their slots.
    redis.call('SET', KEYS[2], tostring(now + ttl))
end
for i = 3, members + 2 do
    redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])
end
for i = 3, #KEYS do
    local job = ARGV[members + i]
    local holder = redis.call('GET', KEYS[i])
    if holder == job then
        redis.call('PEXPIRE', KEYS[i], ttl)
    elseif not holder then
        redis.call('SET', KEYS[i], job, 'PX', ttl)
    end
end
return 1
"""

# KEYS[1] lease; ARGV: holder, ttl ms.
_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
    return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

_UNLEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


def _text(value):
    return value.decode('utf-8') if isinstance(value, bytes) else value


class RedisFleet:
    """Mixin for the Redis driver: needs ``client``, ``expiry``,
    ``translate()`` and ``conf`` (the board's namespace)."""

    _fleet_scripts = None

    def _fleet(self):
        if self._fleet_scripts is None:
            reg = self.client.register_script
            self._fleet_scripts = dict(
                take=reg(_TAKE), give=reg(_GIVE), keep=reg(_KEEP),
                lease=reg(_LEASE), unlease=reg(_UNLEASE))
        return self._fleet_scripts

    def _fleet_key(self, *parts):
        return '.'.join((self.conf.task_flow.jobboard_backend_namespace,
                         'fleet') + parts)

    def _fleet_keys(self, keys):
        return ([self._fleet_key('budget')]
                + [self._fleet_key('lock', k) for k in keys]
                + [self._fleet_key('released', k) for k in keys])

    def fleet_take(self, member, job_id, keys, budget, force=False):
        keys = list(keys)
        with self.translate('taking a fleet slot'):
            answer = self._fleet()['take'](
                keys=self._fleet_keys(keys) + [self._fleet_key('epoch')],
                args=[job_id, member, int(budget or 0),
                      int(self.expiry * 1000), '1' if force else '0',
                      len(keys)])
        granted, refused, holder, key, released = (
            _text(v) for v in answer)
        if int(granted):
            return base.Grant(True, released_at=(
                int(released) / 1000.0 if released else None))
        if key:
            key = key.split('.fleet.lock.', 1)[-1]
        return base.Grant(False, refused=(base.LOCKED if refused == 'locked'
                                          else base.BUDGET),
                          holder=holder or None, key=key or None)

    def fleet_give(self, member, job_id, keys):
        keys = list(keys)
        with self.translate('giving back a fleet slot'):
            self._fleet()['give'](keys=self._fleet_keys(keys),
                                  args=[job_id, member, len(keys)])

    def fleet_keep(self, held):
        if not held:
            return
        members = [m for m, (_, _, budgeted) in held.items() if budgeted]
        locks = []
        owners = []
        for job_id, keys, _ in held.values():
            for key in keys:
                locks.append(self._fleet_key('lock', key))
                owners.append(job_id)
        with self.translate('renewing fleet slots'):
            self._fleet()['keep'](
                keys=[self._fleet_key('budget'), self._fleet_key('epoch')]
                + locks,
                args=[int(self.expiry * 1000), len(members)] + members
                + owners)

    def fleet_in_use(self):
        with self.translate('counting fleet slots'):
            now = self.client.time()
            now_ms = now[0] * 1000 + now[1] // 1000
            return self.client.zcount(self._fleet_key('budget'),
                                      f'({now_ms}', '+inf')

    def try_lease(self, name, holder, ttl):
        with self.translate('taking a lease'):
            return bool(self._fleet()['lease'](
                keys=[self._fleet_key('lease', name)],
                args=[holder, max(1, int(ttl * 1000))]))

    def release_lease(self, name, holder):
        with self.translate('releasing a lease'):
            self._fleet()['unlease'](keys=[self._fleet_key('lease', name)],
                                     args=[holder])
