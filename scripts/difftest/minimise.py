"""Delta debugging of a differing case: the smallest case (steps, then lines
within steps, then bytes within lines; fewer auth answers, a well-behaved
backend) that still differs with the same signature."""

import copy
import json
import time

from . import compare


class Budget(Exception):
    pass


class Probe:
    """Runs candidate cases against both instances, within a budget."""

    def __init__(self, slot, signature, budget, seconds):
        self.slot, self.signature, self.left = slot, signature, budget
        self.deadline = time.monotonic() + seconds
        self.cache = {}
        self.best = None  # the last (so the smallest) candidate that kept the difference

    def __call__(self, case):
        key = json.dumps(case, sort_keys=True)
        if key not in self.cache:
            if self.left <= 0 or time.monotonic() > self.deadline:
                raise Budget()
            self.left -= 1
            out = self.slot.run_once(case)
            diff = compare.compare(case, out["stock"][1], out["ours"][1])
            self.cache[key] = bool(diff) and diff["signature"] == self.signature
            if self.cache[key]:
                self.best = case
        return self.cache[key]


def ddmin(items, keeps):
    """Removes chunks of `items` as long as `keeps(smaller)` holds."""
    n = 2
    while len(items) >= 1:
        chunk = max(1, len(items) // n)
        removed = False
        for start in range(0, len(items), chunk):
            smaller = items[:start] + items[start + chunk:]
            if keeps(smaller):
                items, removed = smaller, True
                n = max(n - 1, 2)
                break
        if not removed:
            if chunk == 1:
                break
            n = min(len(items), n * 2)
    return items


def with_steps(case, steps):
    c = copy.deepcopy(case)
    c["steps"] = steps
    return c


def split_lines(data):
    out, cur = [], ""
    for ch in data:
        cur += ch
        if ch == "\n":
            out.append(cur)
            cur = ""
    return out + ([cur] if cur else [])


def ending_with_shut(case, probe):
    """The case ending with a close of the client's write half, if it keeps
    the difference: later probes then end at once instead of waiting for
    nginx's timeout. Returns (case, the fixed tail of steps)."""
    if case["steps"] and case["steps"][-1] == ["shut"]:
        return case, [["shut"]]
    shut = with_steps(case, case["steps"] + [["shut"]])
    return (shut, [["shut"]]) if probe(shut) else (case, [])


def minimise_steps(case, probe):
    case, tail = ending_with_shut(case, probe)
    body = case["steps"][:len(case["steps"]) - len(tail)]
    steps = ddmin(body, lambda s: probe(with_steps(case, s + tail))) + tail
    case = with_steps(case, steps)
    # merge split packets and pipelined sends into whole ones
    i = 0
    while i + 1 < len(case["steps"]):
        a, b = case["steps"][i], case["steps"][i + 1]
        if a[0] == "send" and b[0] == "send" and a[2] != "reply":
            merged = case["steps"][:i] + [["send", a[1] + b[1], b[2]]] + case["steps"][i + 2:]
            if probe(with_steps(case, merged)):
                case = with_steps(case, merged)
                continue
        i += 1
    return case


def minimise_bytes(case, probe):
    for i, step in enumerate(case["steps"]):
        if step[0] != "send":
            continue

        def keeps_lines(ls, i=i):
            steps = copy.deepcopy(case["steps"])
            steps[i][1] = "".join(ls)
            return bool(ls) and probe(with_steps(case, steps))

        ls = ddmin(split_lines(case["steps"][i][1]), keeps_lines)
        for k in range(len(ls)):
            def keeps_chars(cs, k=k):
                return keeps_lines(ls[:k] + ["".join(cs)] + ls[k + 1:])

            ls[k] = "".join(ddmin(list(ls[k]), keeps_chars))
        case = copy.deepcopy(case)
        case["steps"][i][1] = "".join(ls)
    return case


def minimise_servers(case, probe):
    for mode in ("ok",):
        if case["backend"] != mode:
            c = dict(case, backend=mode)
            if probe(c):
                case = c
    answers = ddmin(case["auth"], lambda a: bool(a) and probe(dict(case, auth=a)))
    return dict(case, auth=answers)


def minimise(slot, case, signature, budget, seconds=120):
    """The smallest variant of `case` found within `budget` runs and
    `seconds` (a case whose runs wait for timeouts is slow)."""
    probe = Probe(slot, signature, budget, seconds)
    best = case
    try:
        for stage in (minimise_steps, minimise_servers, minimise_bytes, minimise_steps):
            best = stage(best, probe)
    except Budget:
        best = probe.best or best
    return best
