"""Printing: the run's summary, and a replayed case's streams side by side."""

import hashlib
import json
import os
import re

from . import compare


def escape(line):
    return "".join(c if c.isprintable() and c != "\\" else
                   {"\r": "\\r", "\n": "\\n", "\t": "\\t", "\\": "\\\\"}.get(c, "\\x%02x" % ord(c))
                   for c in line)


def side_by_side(title, stock, ours, width=58):
    """Lines of both sides next to each other; '!' marks a differing line."""
    a, b = compare.lines(stock), compare.lines(ours)
    out = [f"--- {title} " + "-" * 40, f"  {'stock':<{width}} | ours"]
    for i in range(max(len(a), len(b))):
        x = a[i].decode("latin-1") if i < len(a) else ""
        y = b[i].decode("latin-1") if i < len(b) else ""
        mark = " " if i < len(a) and i < len(b) and a[i] == b[i] else "!"
        out.append(f"{mark} {escape(x)[:width]:<{width}} | {escape(y)[:width]}")
    return "\n".join(out)


def print_replay(case, result_norm):
    print(f"case: {case['protocol']} server {case['server']}, backend {case['backend']}")
    for answer in case["auth"]:
        print("auth answer:", escape(answer))
    for step in case["steps"]:
        print("step:", step[0], *(escape(s) if isinstance(s, str) else s for s in step[1:]))
    for stream in compare.STREAMS:
        print(side_by_side(stream, result_norm["stock"][1][stream], result_norm["ours"][1][stream]))


def slug(signature):
    """A file name for a signature: readable, and unique by its hash (two
    signatures may differ only in bytes the readable part drops)."""
    digest = hashlib.sha1(signature.encode()).hexdigest()[:8]
    return re.sub(r"[^A-Za-z0-9]+", "-", signature).strip("-")[:72] + "-" + digest


def save_case(out_dir, group):
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{slug(group.get('key', group['signature']))}.json")
    with open(path, "w") as f:
        json.dump({"signature": group["signature"], "label": group["label"],
                   "count": group["count"], "case": group["minimised"],
                   "diff": group["diff"], "streams": group["streams"]}, f, indent=1)
    return path


def print_summary(stats, groups, timing, errors, elapsed):
    print(f"\n=== difftest: {elapsed:.0f} s")
    for protocol, s in stats.items():
        print(f"{protocol}: {s['run']} sessions, {s['same']} same, {s['differs']} differ,"
              f" {s['timing']} timing-dependent")
    if groups:
        print("\ndifferences by signature:")
    for g in sorted(groups.values(), key=lambda g: -g["count"]):
        label = f"listed: {g['label']}" if g["label"] else "UNLISTED"
        print(f"  {g['count']:6d}  {g['key']}\n          {label}"
              + (f"\n          case: {g['path']}" if g.get("path") else ""))
    if timing:
        print("\ntiming-dependent (stock or ours differs from itself between runs):")
    for sig, t in sorted(timing.items(), key=lambda kv: -kv[1]["count"]):
        print(f"  {t['count']:6d}  {sig} (unstable: {', '.join(sorted(t['unstable']))})"
              f"\n          case: {t['path']}")
    for e in errors[:5]:
        print("\ntester error:", e)
