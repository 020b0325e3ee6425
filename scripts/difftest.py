#!/usr/bin/env python3
"""Differential tester: ngx-mail-rs against nginx's stock C mail modules.

Generates POP3, IMAP and SMTP sessions from each protocol's grammar (seeded,
reproducible), runs every session against two nginx instances of one binary
(stock: ngx_mail_module.so only; ours: ngx_mail_module.so and
libngx_mail_rs.so) with identical mail{} configurations, and compares what
the client, the auth server and the backend received. Differing cases are
re-run to tell module differences from timing, minimised, grouped by
signature, and labelled when README.md lists them as hardening beyond stock.

  scripts/difftest.py --protocol all --sessions 300 --seed 1
  scripts/difftest.py --replay difftest-out/<case>.json

Exit status: 0 when every difference is listed hardening (or there is none),
1 otherwise. Standard library only; see README.md, "Comparing with stock".
"""

import argparse
import json
import os
import queue
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from difftest import compare, hardening, report  # noqa: E402
from difftest.runner import Harness, Pool, Slot  # noqa: E402

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROTOCOLS = ("pop3", "imap", "smtp")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--protocol", choices=PROTOCOLS + ("all",), default="all")
    p.add_argument("--sessions", type=int, default=1000, help="per protocol")
    p.add_argument("--seed", default="1")
    p.add_argument("--jobs", type=int, default=4, help="sessions run at once")
    p.add_argument("--out", default="difftest-out", help="where minimised cases go")
    p.add_argument("--replay", metavar="FILE", help="run one saved case and show the streams")
    p.add_argument("--minimise-budget", type=int, default=500,
                   help="runs spent minimising each signature's case")
    p.add_argument("--nginx", default=os.environ.get(
        "DIFFTEST_NGINX", f"{TOP}/nginx-src/objs/nginx"))
    p.add_argument("--mail-module", default=os.environ.get(
        "DIFFTEST_MAIL_MODULE", f"{TOP}/nginx-src/objs/ngx_mail_module.so"))
    p.add_argument("--module", default=os.environ.get(
        "DIFFTEST_MODULE", f"{TOP}/target/release/libngx_mail_rs.so"))
    p.add_argument("--keep", action="store_true", help="keep nginx's prefixes (logs)")
    return p.parse_args()


def replay(args, harness):
    with open(args.replay) as f:
        saved = json.load(f)
    case = saved.get("case", saved)
    slot = Slot(harness, 0)
    out = slot.run_once(case)
    report.print_replay(case, out)
    diff = compare.compare(case, out["stock"][1], out["ours"][1])
    if not diff:
        print("\nsame bytes on all three streams")
        return 0
    label = hardening.classify(case, diff, {n: out[n][1] for n in out})
    print(f"\n{diff['signature']}\n" + (f"listed: {label}" if label else "UNLISTED"))
    return 0 if label else 1


def run(args, harness):
    protocols = PROTOCOLS if args.protocol == "all" else (args.protocol,)
    stats = {p: dict(run=0, same=0, differs=0, timing=0) for p in protocols}
    groups, timing, errors = {}, {}, []
    pool = Pool(harness)
    started = time.monotonic()
    try:
        for index in range(args.sessions):
            for protocol in protocols:
                pool.tasks.put(("generated", protocol, args.seed, index))
        total, done, last_print = args.sessions * len(protocols), 0, time.monotonic()
        while done < total:
            try:
                kind, *rest = pool.results.get(timeout=120)
            except queue.Empty:
                errors.append("no result for 120 s: a worker is stuck")
                break
            done += 1
            if kind == "error":
                errors.append(rest[1])
                continue
            case, result = rest
            record_result(stats[case["protocol"]], groups, timing, case, result)
            if time.monotonic() - last_print > 15:
                last_print = time.monotonic()
                print(f"  {done}/{total} sessions, {len(groups)} signatures,"
                      f" {time.monotonic() - started:.0f} s", flush=True)
        minimise_groups(args, pool, groups, timing, stats, errors)
        recheck_unlisted(pool, groups, timing, stats, errors)
        for t in timing.values():
            t["minimised"] = t["case"]
            t["path"] = report.save_case(os.path.join(args.out, "timing"), t)
    finally:
        pool.close()
    for name, alerts in harness.alerts().items():
        errors += [f"{name} nginx: {a}" for a in alerts]
    report.print_summary(stats, groups, timing, errors, time.monotonic() - started)
    unlisted = [g for g in groups.values() if not g["label"]]
    return 1 if unlisted or errors else 0


def record_result(stat, groups, timing, case, result):
    stat["run"] += 1
    if result["verdict"] == "same":
        stat["same"] += 1
        return
    signature = result["diff"]["signature"]
    if result["verdict"] == "timing":
        stat["timing"] += 1
        t = timing.setdefault(signature, {"signature": signature, "count": 0, "unstable": set(),
                                          "case": case, "label": "timing-dependent",
                                          "diff": result["diff"], "streams": result["streams"]})
        t["count"] += 1
        t["unstable"].add(result["unstable"])
        return
    stat["differs"] += 1
    # one signature can hold several causes: sessions are grouped by the
    # signature and the label their own (unminimised) case gets, so that a
    # cause sharing a listed item's signature is minimised on its own
    raw = hardening.classify(case, result["diff"], result["normalised"]) or "UNLISTED"
    key = f"{signature} [{raw}]"
    g = groups.setdefault(key, {"key": key, "signature": signature, "count": 0, "case": case,
                                "minimised": case, "label": None})
    g["count"] += 1
    if g["case"] is case or len(json.dumps(case)) < len(json.dumps(g["case"])):
        g.update(case=case, minimised=case, diff=result["diff"], streams=result["streams"],
                 normalised=result["normalised"])


def to_timing(groups, timing, stats, key, small, result, unstable):
    """Moves a group from the differences to the timing-dependent ones."""
    g = groups.pop(key)
    if g.get("path"):  # saved as a difference: it goes under timing/ instead
        os.remove(g["path"])
        del g["path"]
    stats[small["protocol"]]["differs"] -= g["count"]
    stats[small["protocol"]]["timing"] += g["count"]
    t = timing.setdefault(g["signature"], dict(g, count=0, case=small, unstable=set(),
                                               label="timing-dependent", diff=result["diff"],
                                               streams=result["streams"]))
    t["count"] += g["count"]
    t["unstable"].add(unstable)


def recheck_unlisted(pool, groups, timing, stats, errors):
    """The minimised cases no predicate claims, run again one at a time
    once the run's load is over (CONFIRM_RUNS each): the confirmation runs
    during minimisation share the machine with every other worker, and a
    close racing a reply can stay stable under that load. One that differs
    no more, or not the same way every time, is timing-dependent."""
    for key in [k for k, g in groups.items() if not g["label"]]:
        g = groups[key]
        pool.tasks.put(("recheck", key, g["minimised"]))
        kind, *rest = pool.results.get()
        if kind == "error":
            errors.append(rest[1])
            continue
        _, small, result = rest
        if result["verdict"] == "same":
            to_timing(groups, timing, stats, key, small, result, "both, once quiet")
        elif result["verdict"] == "timing":
            to_timing(groups, timing, stats, key, small, result, result["unstable"])


def minimise_groups(args, pool, groups, timing, stats, errors):
    """Minimises one case per signature, labels it, saves it. A minimised
    case that is not stable over CONFIRM_RUNS moves to timing-dependent."""
    for g in groups.values():
        pool.tasks.put(("minimise", g["key"], g["case"], g["signature"], args.minimise_budget))
    started = last_print = time.monotonic()
    total = len(groups)
    for done in range(total):
        if time.monotonic() - last_print > 15:
            last_print = time.monotonic()
            print(f"  minimised {done}/{total} signatures,"
                  f" {time.monotonic() - started:.0f} s", flush=True)
        kind, *rest = pool.results.get()
        if kind == "error":
            errors.append(rest[1])
            continue
        key, small, result = rest
        g = groups[key]
        signature = g["signature"]
        if result["verdict"] == "timing":
            to_timing(groups, timing, stats, key, small, result, result["unstable"])
            continue
        if result["diff"] and result["diff"]["signature"] == signature:
            g.update(minimised=small, diff=result["diff"], streams=result["streams"],
                     normalised=result["normalised"])
        g["label"] = hardening.classify(g["minimised"], g["diff"], g["normalised"])
        g["path"] = report.save_case(args.out, g)


def main():
    # SIGTERM ends the run like ^C does: through the finally that stops nginx
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    args = parse_args()
    for path in (args.nginx, args.mail_module, args.module):
        if not os.path.exists(path):
            sys.exit(f"difftest: {path} not found (see --nginx, --mail-module, --module)")
    harness = Harness(args.nginx, args.mail_module, args.module, 1 if args.replay else args.jobs)
    harness.start()
    try:
        return replay(args, harness) if args.replay else run(args, harness)
    finally:
        harness.stop(keep=args.keep)


if __name__ == "__main__":
    sys.exit(main())
