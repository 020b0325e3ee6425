"""Running cases against both instances: the worker processes (one per job
slot, each with the mock auth servers and backends of its slot) and the
judgement of one case (same, different, or timing-dependent)."""

import multiprocessing
import threading
import traceback

from . import compare
from .client import run_case
from .generate import generate
from .instances import Instance, allocate_slots
from .mocks import SlotMocks

STABILITY_RUNS = 2  # extra runs of a differing case on each instance
CONFIRM_RUNS = 5  # extra runs of a minimised case before it is reported


class Harness:
    """Both nginx instances and their slots' ports."""

    def __init__(self, binary, mail_module, our_module, jobs):
        self.jobs = jobs
        self.slots = allocate_slots(jobs)
        self.instances = {
            "stock": Instance("stock", binary, [mail_module], self.slots["stock"]),
            "ours": Instance("ours", binary, [mail_module, our_module], self.slots["ours"]),
        }

    def start(self):
        for inst in self.instances.values():
            inst.start()

    def stop(self, keep=False):
        for inst in self.instances.values():
            inst.stop(keep)

    def alerts(self):
        return {name: inst.alerts() for name, inst in self.instances.items()}


class Slot:
    """What one worker owns: the ports and mocks of one slot on both instances."""

    def __init__(self, harness, j):
        self.ports = {name: harness.slots[name][j] for name in ("stock", "ours")}
        self.mocks = {name: SlotMocks(p.auth, p.backend) for name, p in self.ports.items()}

    def run_once(self, case):
        """Runs `case` against both instances at once; normalised streams."""
        out = {}

        def one(name):
            streams = run_case(case, self.ports[name], self.mocks[name])
            out[name] = (streams, compare.normalised(streams, self.ports[name].names()))

        threads = [threading.Thread(target=one, args=(n,)) for n in ("stock", "ours")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return out

    def judge(self, case, stability=STABILITY_RUNS):
        """{'verdict': 'same'|'differs'|'timing', 'diff', 'streams', 'note'}"""
        first = self.run_once(case)
        diff = compare.compare(case, first["stock"][1], first["ours"][1])
        notes = "; ".join(f"{n}: {first[n][0].note}" for n in first if first[n][0].note)
        result = {"verdict": "same", "diff": diff, "note": notes,
                  "streams": {n: first[n][0].as_dict() for n in first},
                  "normalised": {n: first[n][1] for n in first}}
        if diff is None:
            return result
        result["verdict"] = "differs"
        for _ in range(stability):
            again = self.run_once(case)
            for name in ("stock", "ours"):
                if again[name][1] != first[name][1]:
                    result["verdict"] = "timing"
                    result["unstable"] = name
                    return result
        return result


def worker_main(harness, j, tasks, results):
    """One worker process: judges generated cases, minimises, replays."""
    from .minimise import minimise  # after fork: keeps the parent light

    slot = Slot(harness, j)
    while True:
        task = tasks.get()
        if task is None:
            return
        try:
            if task[0] == "generated":
                _, protocol, seed, index = task
                case = generate(protocol, seed, index)
                results.put(("judged", case, slot.judge(case)))
            elif task[0] == "minimise":
                _, key, case, signature, budget = task
                small = minimise(slot, case, signature, budget)
                results.put(("minimised", key, small, slot.judge(small, CONFIRM_RUNS)))
            elif task[0] == "recheck":
                _, key, case = task
                results.put(("rechecked", key, case, slot.judge(case, CONFIRM_RUNS)))
            elif task[0] == "judge":
                results.put(("judged", task[1], slot.judge(task[1])))
        except Exception:  # a bug of the tester: reported, never hidden
            results.put(("error", task, traceback.format_exc()))


class Pool:
    """The worker processes of a run."""

    def __init__(self, harness):
        ctx = multiprocessing.get_context("fork")
        self.tasks = ctx.Queue()
        self.results = ctx.Queue()
        self.procs = [ctx.Process(target=worker_main, args=(harness, j, self.tasks, self.results),
                                  daemon=True) for j in range(harness.jobs)]
        for p in self.procs:
            p.start()

    def close(self):
        for _ in self.procs:
            self.tasks.put(None)
        for p in self.procs:
            p.join(30)
            if p.is_alive():
                p.terminate()
