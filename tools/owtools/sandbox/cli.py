"""Command line of the sandbox (``tools/sandbox`` runs it).

::

    tools/sandbox start  [--name N] [--dir D] [--no-user-clouds]
                         [--db-url URL] [--transport-url URL] [--no-standin]
                         [--fast-failovers]
    tools/sandbox stop   [--name N] [--dir D]
    tools/sandbox status [--name N] [--dir D] [--json]
    tools/sandbox seed    --count N [--topology SINGLE|ACTIVE_STANDBY]
                         [--project P] [--availability-zone AZ] [--no-wait]
    tools/sandbox seed-db --count N [--topology ...] [--project P]
                         [--image-id ID] [--zones az1,az2] [--no-standin]
    tools/sandbox inject [--delay POINT=SECONDS]... [--fail POINT=P]...
                         [--field NAME=VALUE]... [--clear] [--show]
    tools/sandbox accounting [--json]
    tools/sandbox heartbeats [--bad-image ID]... [--silence-lb ID]...
                         [--silence-amphora ID]... [--no-reload-image ID]...
                         [--max-amphorae N]
                         [--clear] [--show]
    tools/sandbox health [--failover-threshold N|none]
                         [--heartbeat-timeout S] [--health-check-interval S]
                         [--heartbeat-interval S]

Exit status: 0 ok, 1 the operation failed, 2 bad usage. Errors are one
line on stderr (start-up failures add the tail of the failing log).
"""

import argparse
import json
import re
import sys
import time

from owtools.sandbox import inject as inject_mod
from owtools.sandbox.api import ApiError
from owtools.sandbox.config import SandboxError
from owtools.sandbox.core import Sandbox


def _parser():
    p = argparse.ArgumentParser(
        prog="tools/sandbox",
        description="A throw-away stock Octavia (no-op drivers) on loopback.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--name", default="sandbox",
                        help="sandbox and clouds.yaml cloud name "
                             "(default: sandbox)")
    common.add_argument("--dir", help="sandbox directory (default: "
                                      "<repo>/.state/sandbox/<name>)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("start", parents=[common], help="start a sandbox")
    s.add_argument("--no-user-clouds", action="store_true",
                   help="do not add the cloud to ~/.config/openstack/"
                        "clouds.yaml (use <dir>/clouds.yaml via "
                        "OS_CLIENT_CONFIG_FILE)")
    s.add_argument("--db-url", help="use this MariaDB database "
                                    "(mysql+pymysql://...) instead of a "
                                    "private MariaDB")
    s.add_argument("--transport-url", help="use this RabbitMQ "
                                           "(rabbit://...) instead of a "
                                           "private one")
    s.add_argument("--no-standin", action="store_true",
                   help="do not start the Nova/Glance stand-in")
    s.add_argument("--fast-failovers", action="store_true",
                   help="benchmarks only: load-balancer failovers finish at "
                        "once in the database instead of running Octavia's "
                        "flow (owtools.sandbox.fastfailover)")
    s.add_argument("--timeout", type=float, default=120.0)
    s.add_argument("--quiet", action="store_true")

    sub.add_parser("stop", parents=[common], help="stop a sandbox")
    st = sub.add_parser("status", parents=[common], help="show a sandbox")
    st.add_argument("--json", action="store_true")

    sd = sub.add_parser("seed", parents=[common],
                        help="create load balancers through the API")
    sd.add_argument("--count", type=int, required=True)
    sd.add_argument("--topology", default="SINGLE",
                    choices=["SINGLE", "ACTIVE_STANDBY"])
    sd.add_argument("--project", default="sandbox-project")
    sd.add_argument("--availability-zone")
    sd.add_argument("--no-wait", action="store_true")
    sd.add_argument("--concurrency", type=int, default=8)

    sb = sub.add_parser("seed-db", parents=[common],
                        help="insert ACTIVE load balancers into the DB")
    sb.add_argument("--count", type=int, required=True)
    sb.add_argument("--topology", default="SINGLE",
                    choices=["SINGLE", "ACTIVE_STANDBY"])
    sb.add_argument("--project", default="sandbox-project")
    sb.add_argument("--image-id", help="amphora image_id (default: the "
                                       "stand-in's current image, if any)")
    sb.add_argument("--zones", help="comma-separated cached_zone values")
    sb.add_argument("--no-standin", action="store_true",
                    help="do not place the amphora VMs on stand-in hosts")

    ij = sub.add_parser("inject", parents=[common],
                        help="set delays/failures/amphora fields live")
    ij.add_argument("--delay", action="append", metavar="POINT=SECONDS",
                    help="e.g. compute.build=3 or compute.build=[1,3]; "
                         "empty value removes")
    ij.add_argument("--fail", action="append", metavar="POINT=PROBABILITY",
                    help="e.g. compute.build=0.2")
    ij.add_argument("--field", action="append", metavar="NAME=VALUE",
                    help="amphora field override: "
                         + ", ".join(inject_mod.FIELDS))
    ij.add_argument("--clear", action="store_true",
                    help="remove all knobs first")
    ij.add_argument("--show", action="store_true")

    hb = sub.add_parser("heartbeats", parents=[common],
                        help="amphora-agent stand-in knobs (each option "
                             "given replaces that list)")
    hb.add_argument("--bad-image", action="append", metavar="IMAGE_ID",
                    help="amphorae of this image report members DOWN")
    hb.add_argument("--silence-lb", action="append", metavar="LB_ID",
                    help="amphorae of this load balancer stop heartbeating")
    hb.add_argument("--silence-amphora", action="append",
                    metavar="AMPHORA_ID", help="this amphora stops "
                                               "heartbeating")
    hb.add_argument("--no-reload-image", action="append",
                    metavar="IMAGE_ID", help="amphorae of this image keep "
                                             "their health managers after "
                                             "a config push")
    hb.add_argument("--max-amphorae", type=int,
                    help="at most this many amphorae heartbeat")
    hb.add_argument("--clear", action="store_true",
                    help="remove all heartbeat knobs first")
    hb.add_argument("--show", action="store_true",
                    help="print the knobs and what each amphora sends")

    hm = sub.add_parser("health", parents=[common],
                        help="health manager settings (restarts it)")
    hm.add_argument("--failover-threshold", metavar="N|none")
    hm.add_argument("--heartbeat-timeout", type=int, metavar="SECONDS")
    hm.add_argument("--health-check-interval", type=int, metavar="SECONDS")
    hm.add_argument("--heartbeat-interval", type=int, metavar="SECONDS")

    ac = sub.add_parser("accounting", parents=[common],
                        help="amphorae per load balancer, configure calls")
    ac.add_argument("--json", action="store_true")
    return p


def masked(url):
    """``url`` with its password shown as ``***`` (what this prints may
    end up in a terminal log, a CI log or a bug report)."""
    if not isinstance(url, str):
        return url
    return re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", url)


def _running(args):
    sb = Sandbox(args.name, args.dir)
    if not sb.api_url or not sb.status()["running"]:
        raise SandboxError(f"sandbox {args.name} is not running "
                           f"({sb.dir}); start it with: tools/sandbox start")
    return sb


def _cmd_start(args):
    say = (lambda m: None) if args.quiet else (
        lambda m: print(f"sandbox: {m}", file=sys.stderr))
    sb = Sandbox(args.name, args.dir).start(
        db_url=args.db_url, transport_url=args.transport_url,
        user_clouds=not args.no_user_clouds, standin=not args.no_standin,
        timeout=args.timeout, progress=say,
        fast_failovers=args.fast_failovers)
    print(f"API         {sb.api_url}")
    if args.fast_failovers:
        print("worker      zero-second load-balancer failovers (benchmarks "
              "only)")
    if sb.standin_url:
        print(f"stand-in    {sb.standin_url}")
    print(f"database    {masked(sb.db_url)}")
    print(f"clouds.yaml {sb.clouds_yaml} (cloud {sb.cloud_name})")
    if args.no_user_clouds:
        print(f"use: export OS_CLIENT_CONFIG_FILE={sb.clouds_yaml}")
    print(f"try: octavia-workflow --os-cloud {sb.cloud_name} ...")
    return 0


def _cmd_stop(args):
    sb = Sandbox(args.name, args.dir)
    stopped = sb.stop()
    print(f"sandbox: cloud {args.name} stopped ({len(stopped)} "
          f"process(es))")
    return 0


def _cmd_status(args):
    st = Sandbox(args.name, args.dir).status()
    for key in ("db_url", "transport_url"):
        st[key] = masked(st.get(key))
    if args.json:
        print(json.dumps(st, indent=2))
    else:
        for key in ("name", "dir", "running", "api_url", "standin_url",
                    "db_url", "clouds_yaml", "processes", "alive"):
            print(f"{key:12} {st[key]}")
    return 0 if st["running"] else 1


def _cmd_seed(args):
    from owtools.sandbox import seed
    sb = _running(args)
    t0 = time.monotonic()
    ids = seed.seed_api(sb.api, args.count, args.topology, args.project,
                        availability_zone=args.availability_zone,
                        wait=not args.no_wait, concurrency=args.concurrency)
    state = "created" if args.no_wait else "ACTIVE"
    print(f"{len(ids)} {args.topology} load balancer(s) {state} in "
          f"{time.monotonic() - t0:.1f}s", file=sys.stderr)
    for lb_id in ids:
        print(lb_id)
    return 0


def _cmd_seed_db(args):
    from owtools.sandbox import seed
    sb = _running(args)
    standin, image_id = None, args.image_id
    if not args.no_standin and sb.standin_url:
        from owtools.standin import StandinState
        standin = StandinState(str(sb.dir / "standin.db"))
        image_id = image_id or standin.image_for(tag="amphora")
    t0 = time.monotonic()
    ids = seed.seed_db(sb.db_url, args.count, args.topology, args.project,
                       image_id=image_id,
                       zones=args.zones.split(",") if args.zones else None,
                       standin=standin)
    print(f"{len(ids)} {args.topology} load balancer(s) inserted in "
          f"{time.monotonic() - t0:.1f}s", file=sys.stderr)
    return 0


def _cmd_inject(args):
    sb = Sandbox(args.name, args.dir)
    if args.clear:
        sb.clear_injection()
    knobs = sb.inject(
        delays=inject_mod.parse_assignments(args.delay) or None,
        fail=inject_mod.parse_assignments(args.fail) or None,
        amphora_fields=inject_mod.parse_assignments(args.field, str) or None)
    if args.show or not (args.delay or args.fail or args.field):
        print(json.dumps(knobs, indent=2, sort_keys=True))
    return 0


def _cmd_accounting(args):
    acc = _running(args).accounting()
    by_lb = acc.amphorae_by_lb()
    calls = acc.configured_amphorae()
    acc.close()
    if args.json:
        print(json.dumps({"amphorae_by_lb": by_lb,
                          "configure_calls": calls}, indent=2))
        return 0
    for lb_id, statuses in sorted(by_lb.items()):
        print(lb_id, " ".join(f"{k}={v}" for k, v in sorted(statuses.items())))
    print(f"configure calls: {sum(calls.values())} on {len(calls)} amphorae")
    return 0


def _cmd_heartbeats(args):
    from owtools.sandbox import heartbeats
    sb = Sandbox(args.name, args.dir)
    lists = {key: value for key, value in (
        ("bad_images", args.bad_image),
        ("silent_load_balancers", args.silence_lb),
        ("silent_amphorae", args.silence_amphora),
        ("no_reload_images", args.no_reload_image)) if value is not None}
    knobs = sb.heartbeat_knobs(clear=args.clear,
                               max_amphorae=args.max_amphorae, **lists)
    if args.show or not (lists or args.clear or args.max_amphorae):
        print(json.dumps({"knobs": knobs,
                          "status": heartbeats.read_status(sb.dir)},
                         indent=2, sort_keys=True))
    return 0


def _cmd_health(args):
    sb = _running(args)
    settings = {}
    if args.failover_threshold is not None:
        value = args.failover_threshold
        if value.lower() == "none":
            settings["failover_threshold"] = None
        elif value.isdigit():
            settings["failover_threshold"] = int(value)
        else:
            raise ValueError("--failover-threshold takes a number or none")
    for key in ("heartbeat_timeout", "health_check_interval",
                "heartbeat_interval"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    health = sb.health()
    if settings:
        try:
            health.configure(**settings)
        except SandboxError as exc:
            raise ValueError(str(exc)) from None
        health.restart()
    print(json.dumps(health.settings(), indent=2, sort_keys=True))
    return 0


COMMANDS = {"start": _cmd_start, "stop": _cmd_stop, "status": _cmd_status,
            "seed": _cmd_seed, "seed-db": _cmd_seed_db, "inject": _cmd_inject,
            "accounting": _cmd_accounting, "heartbeats": _cmd_heartbeats,
            "health": _cmd_health}


def main(argv=None):
    """Run one sandbox command; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (SandboxError, ApiError) as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
