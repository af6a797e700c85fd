"""Load balancers for the sandbox: through the API, or in bulk into its DB.

* :func:`seed_api` creates load balancers through the Octavia API (the
  worker builds their amphorae) and waits for ACTIVE.
* :func:`seed_db` inserts many ACTIVE load balancers with their VIPs and
  amphorae straight into the sandbox's database (10,000 in seconds), using
  Octavia's own table definitions; the API lists them and fails them over
  like any other.
"""

import concurrent.futures
import datetime
import random
import uuid

import sqlalchemy as sa

from owtools.sandbox.api import ApiError

# The no-op network driver accepts any id; fixed ones make runs comparable.
VIP_NETWORK_ID = "8a4f1b9e-3c1d-4e0a-9b7e-000000000001"
VIP_SUBNET_ID = "8a4f1b9e-3c1d-4e0a-9b7e-000000000002"
DEFAULT_PROJECT = "sandbox-project"
TOPOLOGIES = {"SINGLE": "single", "ACTIVE_STANDBY": "active-standby"}


def flavor_id(api, topology):
    """The id of the sandbox flavor for ``topology``."""
    name = TOPOLOGIES[topology]
    for flavor in api.get("/v2/lbaas/flavors")["flavors"]:
        if flavor["name"] == name:
            return flavor["id"]
    raise ApiError(f"sandbox flavor {name!r} is missing")


def ensure_availability_zone(api, name, compute_zone=None):
    """Create the Octavia availability zone ``name`` (and its profile,
    ``compute_zone`` defaulting to ``name``) unless it exists."""
    zones = api.get("/v2/lbaas/availabilityzones")["availability_zones"]
    if any(z["name"] == name for z in zones):
        return name
    import json
    profile = api.post("/v2/lbaas/availabilityzoneprofiles", {
        "availability_zone_profile": {
            "name": f"sandbox-{name}", "provider_name": "amphora",
            "availability_zone_data": json.dumps(
                {"compute_zone": compute_zone or name})}})
    api.post("/v2/lbaas/availabilityzones", {"availability_zone": {
        "name": name,
        "availability_zone_profile_id":
            profile["availability_zone_profile"]["id"]}})
    return name


def seed_api(api, count, topology="SINGLE", project_id=DEFAULT_PROJECT,
             prefix="lb", availability_zone=None, wait=True, timeout=None,
             concurrency=8):
    """Create ``count`` load balancers through the API; returns their ids
    (after they are ACTIVE when ``wait``)."""
    if topology not in TOPOLOGIES:
        raise ValueError(f"topology must be one of {', '.join(TOPOLOGIES)}")
    body = {"vip_subnet_id": VIP_SUBNET_ID, "project_id": project_id,
            "flavor_id": flavor_id(api, topology)}
    if availability_zone:
        body["availability_zone"] = ensure_availability_zone(
            api, availability_zone)
    tag = uuid.uuid4().hex[:6]

    def create(i):
        lb = dict(body, name=f"{prefix}-{tag}-{i:05d}")
        return api.post("/v2/lbaas/loadbalancers",
                        {"loadbalancer": lb})["loadbalancer"]["id"]

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        ids = list(pool.map(create, range(count)))
    if wait:
        api.wait_lbs(ids, timeout=timeout or 30 + 1.5 * count)
    return ids


def _ip(n, base):
    return f"{base}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def seed_db(db_url, count, topology="SINGLE", project_id=DEFAULT_PROJECT,
            prefix="bulk", image_id=None, zones=None, compute_flavor=None,
            cert_days=(5, 365), batch=2000, standin=None, seed=None):
    """Insert ``count`` ACTIVE load balancers (with VIP, amphorae and, for
    ACTIVE_STANDBY, a VRRP group) into the Octavia database at ``db_url``.

    ``zones``: availability zones assigned round-robin to the amphorae'
    ``cached_zone``; ``cert_days``: range of days to certificate expiry;
    ``standin``: a ``StandinState`` on which to place every amphora VM
    (so host-based runbooks see them). Returns the new load balancer ids.
    """
    from octavia.db import models

    if topology not in TOPOLOGIES:
        raise ValueError(f"topology must be one of {', '.join(TOPOLOGIES)}")
    rnd = random.Random(seed)
    now = datetime.datetime.now(datetime.timezone.utc).replace(
        tzinfo=None, microsecond=0)
    roles = (["STANDALONE"] if topology == "SINGLE" else ["MASTER", "BACKUP"])
    engine = sa.create_engine(db_url)
    lb_t, vip_t = models.LoadBalancer.__table__, models.Vip.__table__
    amp_t, vrrp_t = models.Amphora.__table__, models.VRRPGroup.__table__
    quota_t = models.Quotas.__table__
    with engine.connect() as conn:
        flavor = conn.execute(sa.text(
            "SELECT id FROM flavor WHERE name=:n"),
            {"n": TOPOLOGIES[topology]}).scalar()
        offset = conn.execute(sa.text("SELECT COUNT(*) FROM amphora")).scalar()
    lb_ids, placements = [], []
    try:
        for start in range(0, count, batch):
            lbs, vips, amps, groups = [], [], [], []
            for i in range(start, min(count, start + batch)):
                lb_id = str(uuid.uuid4())
                lb_ids.append(lb_id)
                n = offset + i + 1
                lbs.append(dict(
                    id=lb_id, project_id=project_id,
                    name=f"{prefix}-{i:05d}", description="seeded in bulk",
                    provisioning_status="ACTIVE", operating_status="ONLINE",
                    enabled=True, topology=topology, provider="amphora",
                    flavor_id=flavor, created_at=now, updated_at=now))
                vips.append(dict(
                    load_balancer_id=lb_id, ip_address=_ip(n, "172"),
                    port_id=str(uuid.uuid4()), subnet_id=VIP_SUBNET_ID,
                    network_id=VIP_NETWORK_ID, octavia_owned=True,
                    vnic_type="normal"))
                if topology == "ACTIVE_STANDBY":
                    groups.append(dict(
                        load_balancer_id=lb_id,
                        vrrp_group_name=lb_id.replace("-", "")[:36],
                        vrrp_auth_type="PASS",
                        vrrp_auth_pass=uuid.uuid4().hex[:7],
                        advert_int=1))
                for k, role in enumerate(roles):
                    compute_id = str(uuid.uuid4())
                    zone = zones[(i * len(roles) + k) % len(zones)] \
                        if zones else None
                    expiry = now + datetime.timedelta(
                        days=rnd.uniform(*cert_days))
                    amp_n = n * 2 + k
                    amps.append(dict(
                        id=str(uuid.uuid4()), compute_id=compute_id,
                        status="ALLOCATED", load_balancer_id=lb_id,
                        lb_network_ip=_ip(amp_n, "11"),
                        vrrp_ip=_ip(amp_n, "173"),
                        ha_ip=vips[-1]["ip_address"],
                        vrrp_port_id=str(uuid.uuid4()),
                        ha_port_id=vips[-1]["port_id"],
                        cert_expiration=expiry.replace(microsecond=0),
                        cert_busy=False, role=role,
                        vrrp_interface=(None if role == "STANDALONE"
                                        else "eth1"),
                        vrrp_id=1,
                        vrrp_priority={"MASTER": 100, "BACKUP": 90}.get(role),
                        cached_zone=zone, image_id=image_id,
                        compute_flavor=compute_flavor,
                        created_at=now, updated_at=now))
                    placements.append((compute_id, f"amphora-{amps[-1]['id']}",
                                       zone))
            with engine.begin() as conn:
                conn.execute(lb_t.insert(), lbs)
                conn.execute(vip_t.insert(), vips)
                if groups:
                    conn.execute(vrrp_t.insert(), groups)
                conn.execute(amp_t.insert(), amps)
        with engine.begin() as conn:
            _add_quota_usage(conn, quota_t, project_id, count)
    finally:
        engine.dispose()
    if standin is not None:
        for compute_id, name, zone in placements:
            standin.place_server(compute_id, name, availability_zone=zone,
                                 image_id=image_id)
    return lb_ids


def _add_quota_usage(conn, quota_t, project_id, count):
    """Keep Octavia's per-project in-use counter consistent, so deleting a
    seeded load balancer through the API does not drive it negative."""
    row = conn.execute(sa.select(quota_t.c.in_use_load_balancer).where(
        quota_t.c.project_id == project_id)).first()
    if row is None:
        conn.execute(quota_t.insert(), [dict(project_id=project_id,
                                             in_use_load_balancer=count)])
    else:
        conn.execute(quota_t.update().where(
            quota_t.c.project_id == project_id).values(
                in_use_load_balancer=(row[0] or 0) + count))
