#!/usr/bin/env python3
"""keel's chaos test: procurement runs while everything under them dies.

    tools/chaos/chaos.py            (make chaos CHAOS_RUNS=N; make chaos-smoke)

It runs a stack of its own beside the dev stack (tools/devstack with KEEL_RUN_DIR=build/run-chaos
and every port moved by CHAOS_PORT_OFFSET), keel's offline model server, a second model server
used only as the notification webhook sink (never killed, so its counts survive), and
CHAOS_WORKERS keel-worker processes on a task queue of its own. It submits CHAOS_RUNS
keel.Procurement runs of six classes (auto-approved, one approval, two approvals, rejected by
budget, by the manager, by the director), each on a cost centre made for it, and acts as the
business system that sends the approvals and rejections the runs wait for (by signal or by the
`decide` update, retrying while the server is away). Meanwhile it SIGKILLs workers at random
intervals and restarts them, arms keel's failpoints on some restarted workers, kills the model
server now and then, and restarts keel's PostgreSQL once and the Temporal server once.

When every run has closed (or CHAOS_DEADLINE has passed) it counts, per run: closed and
completed, the outcome, purchase orders and budget commitments (SQL on keel's database), the
notifications the webhook received for each tool.notify the history scheduled, notification
claims left `claimed`, workflow task failures (history and worker logs), non-determinism, and a
replay of the final history through `keelctl replay`. It prints a table, writes
build/chaos/report.json and exits 1 on any lost run, wrong outcome, duplicate or missing effect,
stuck claim, non-determinism or replay failure (2 when the harness itself could not do its job).

Everything it writes goes under build/; it talks to 127.0.0.1 only; it stops every process it
started when it ends, also on failure or Ctrl-C. Python 3 standard library only.
See docs/operations.md, "Chaos".
"""

import base64
import calendar
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOST = "127.0.0.1"
NAMESPACE = "default"
WORKFLOW_TYPE = "keel.Procurement"

# keel's failpoints (activities/failpoint.h): each ends keel-worker with _exit(137) right after an
# effect is durable and before the activity reports it. notify.after_claim comes with the fix of
# defect 10 (branch `claims`); a build without it is told so and runs without it.
FAILPOINTS = ["llm.after_ledger_put", "procurement.after_po_commit", "notify.after_claim"]

PAPER = "We need 10 boxes of A4 copy paper and 2 black toner cartridges."
LAPTOPS_4 = "Please order 4 laptops (14-inch, 16 GB RAM) for the new engineers."
LAPTOPS_10 = "We need 10 laptops (14-inch, 16 GB RAM) for the contractors."
LAPTOPS_5 = "Buy 5 laptops for the events team."
REQUESTER = "alex.engineer@example.com"

# The mix: request (answered by tools/model-server/scenarios/10-procurement.json), the cost
# centre's budget, the decisions the business system makes (level, verdict), the outcome, and
# the amount an ordered run commits.
CLASSES = {
    "auto": dict(request=PAPER, budget="10000", decisions=[], outcome="ordered",
                 amount=438.00, weight=25),
    "one-approval": dict(request=LAPTOPS_4, budget="20000", decisions=[("manager", "approve")],
                         outcome="ordered", amount=4596.00, weight=20),
    "two-approvals": dict(request=LAPTOPS_10, budget="50000",
                          decisions=[("manager", "approve"), ("director", "approve")],
                          outcome="ordered", amount=11490.00, weight=20),
    "budget-reject": dict(request=LAPTOPS_5, budget="2000", decisions=[], outcome="rejected",
                          amount=0, weight=10),
    "manager-rejects": dict(request=LAPTOPS_4, budget="20000", decisions=[("manager", "reject")],
                            outcome="rejected", amount=0, weight=15),
    "director-rejects": dict(request=LAPTOPS_10, budget="50000",
                             decisions=[("manager", "approve"), ("director", "reject")],
                             outcome="rejected", amount=0, weight=10),
}

T0 = time.monotonic()
LOG_LOCK = threading.Lock()
EVENTS_FILE = None


def wall_clock():
    """UTC time of day with milliseconds, as PostgreSQL and keel's logs print it."""
    t = time.time()
    return time.strftime("%H:%M:%S", time.gmtime(t)) + ".%03d" % (int(t * 1000) % 1000)


def say(msg):
    line = "chaos %s [%6.1fs] %s" % (wall_clock(), time.monotonic() - T0, msg)
    with LOG_LOCK:
        print(line, flush=True)
        if EVENTS_FILE:
            EVENTS_FILE.write(line + "\n")
            EVENTS_FILE.flush()


class HarnessError(Exception):
    """The harness could not do its job (exit 2), as opposed to keel misbehaving (exit 1)."""


# ---------------------------------------------------------------------------------------------
# Configuration


def env_int(name, default, lo, hi):
    v = os.environ.get(name, "")
    if v == "":
        return default
    try:
        n = int(v)
    except ValueError:
        raise HarnessError("%s=%r is not a whole number" % (name, v))
    if not lo <= n <= hi:
        raise HarnessError("%s=%d is out of range (%d to %d)" % (name, n, lo, hi))
    return n


def env_float(name, default, lo, hi):
    v = os.environ.get(name, "")
    if v == "":
        return default
    try:
        n = float(v)
    except ValueError:
        raise HarnessError("%s=%r is not a number" % (name, v))
    if not lo <= n <= hi:
        raise HarnessError("%s=%s is out of range (%s to %s)" % (name, v, lo, hi))
    return n


def env_range(name, default, lo, hi):
    """'A-B' seconds (or one number)."""
    v = os.environ.get(name, "")
    if v == "":
        return default
    m = re.fullmatch(r"\s*([0-9.]+)\s*(?:-\s*([0-9.]+)\s*)?", v)
    if not m:
        raise HarnessError("%s=%r: expected seconds as A-B (e.g. 8-25)" % (name, v))
    a = float(m.group(1))
    b = float(m.group(2)) if m.group(2) else a
    if not (lo <= a <= b <= hi):
        raise HarnessError("%s=%r: expected %s <= A <= B <= %s" % (name, v, lo, hi))
    return (a, b)


class Config:
    def __init__(self):
        self.runs = env_int("CHAOS_RUNS", 20, 1, 100000)
        seed = os.environ.get("CHAOS_SEED", "")
        if seed == "":
            self.seed = int.from_bytes(os.urandom(4), "big") % 1000000
        else:
            try:
                self.seed = int(seed)
            except ValueError:
                raise HarnessError("CHAOS_SEED=%r is not a whole number" % seed)
        self.workers = env_int("CHAOS_WORKERS", 2, 1, 16)
        self.kill_every = env_range("CHAOS_KILL_EVERY", (3.0, 12.0), 1, 3600)
        self.failpoint_rate = env_float("CHAOS_FAILPOINT_RATE", 0.6, 0, 1)
        self.model_kill_every = env_range("CHAOS_MODEL_KILL_EVERY", (20.0, 45.0), 1, 3600)
        self.model_down = env_range("CHAOS_MODEL_DOWN", (1.0, 4.0), 0, 600)
        self.think = env_range("CHAOS_THINK", (1.0, 10.0), 0, 3600)
        self.model_faults = env_float("CHAOS_MODEL_FAULTS", 0.2, 0, 1)
        default_window = max(40.0, 0.6 * self.runs)
        self.submit_window = env_float("CHAOS_SUBMIT_SECONDS", default_window, 0, 86400)
        self.deadline = env_int("CHAOS_DEADLINE", int(300 + 6 * self.runs), 60, 7 * 86400)
        self.keep_stack = os.environ.get("CHAOS_KEEP_STACK", "") not in ("", "0")
        self.offset = env_int("CHAOS_PORT_OFFSET", 10000, 1, 10000)
        self.model_port = env_int("CHAOS_MODEL_PORT", 8395, 1, 65535)
        self.hook_port = env_int("CHAOS_HOOK_PORT", 8394, 1, 65535)
        build = os.path.join(ROOT, "build")
        self.run_dir = os.environ.get("CHAOS_RUN_DIR") or os.path.join(build, "run-chaos")
        self.out_root = os.path.join(build, "chaos")
        self.worker_bin = os.environ.get("KEEL_WORKER") or os.path.join(build, "bin",
                                                                       "keel-worker")
        self.keelctl = os.environ.get("KEELCTL") or os.path.join(build, "bin", "keelctl")
        # The stack's keelctl (registration, health) is the plain build's, like make devstack-up.
        self.stack_keelctl = os.path.join(build, "bin", "keelctl")
        o = self.offset
        self.temporal_port = 7233 + o
        self.stack_env = {
            "KEEL_RUN_DIR": self.run_dir,
            "KEEL_TEMPORAL_PORT": str(7233 + o),
            "KEEL_TEMPORAL_HTTP_PORT": str(7243 + o),
            "KEEL_TEMPORAL_HISTORY_PORT": str(7234 + o),
            "KEEL_TEMPORAL_MATCHING_PORT": str(7235 + o),
            "KEEL_TEMPORAL_WORKER_PORT": str(7239 + o),
            "KEEL_TEMPORAL_MEMBERSHIP_PORTS": " ".join(str(p + o) for p in (6933, 6934, 6935,
                                                                           6939)),
            "KEEL_UI_PORT": str(8233 + o),
            "KEEL_PG_PORT": str(54329 + o),
            "KEELCTL": self.stack_keelctl,
        }
        for p in [7233 + o, 54329 + o, 8233 + o]:
            if p > 65535:
                raise HarnessError("CHAOS_PORT_OFFSET=%d moves port %d past 65535" % (o, p - o))
        self.address = "%s:%d" % (HOST, self.temporal_port)
        self.database_url = "postgresql://keel@%s:%d/keel" % (HOST, 54329 + o)
        for f in (self.worker_bin, self.keelctl, self.stack_keelctl):
            if not os.access(f, os.X_OK):
                raise HarnessError("%s is missing: build first (make all)" % f)

    def describe(self):
        return {
            "runs": self.runs, "seed": self.seed, "workers": self.workers,
            "kill_every_s": list(self.kill_every), "failpoint_rate": self.failpoint_rate,
            "model_kill_every_s": list(self.model_kill_every),
            "model_down_s": list(self.model_down), "think_s": list(self.think),
            "model_faults": self.model_faults, "submit_window_s": self.submit_window,
            "deadline_s": self.deadline, "temporal": self.address,
            "database": self.database_url, "model_port": self.model_port,
            "hook_port": self.hook_port, "run_dir": self.run_dir,
            "keel_worker": self.worker_bin, "keelctl": self.keelctl,
        }


# ---------------------------------------------------------------------------------------------
# Processes


def run(cmd, timeout, env=None, input_text=None):
    """Run a command; (returncode, stdout, stderr). A timeout is returncode None."""
    try:
        p = subprocess.run(cmd, input=input_text, capture_output=True, text=True,
                           timeout=timeout, env=env, cwd=ROOT)
        return p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return None, out, "timed out after %ss" % timeout


class Keelctl:
    def __init__(self, cfg):
        self.cfg = cfg
        self.env = dict(os.environ, TEMPORAL_ADDRESS=cfg.address, TEMPORAL_NAMESPACE=NAMESPACE,
                        DATABASE_URL=cfg.database_url)
        self.env.pop("TEMPORAL_API_KEY", None)
        self.env.pop("TEMPORAL_TLS", None)

    def __call__(self, args, timeout=5, json_out=False):
        cmd = [self.cfg.keelctl, "--address", self.cfg.address, "--namespace", NAMESPACE,
               "--timeout", "%ds" % timeout]
        if json_out:
            cmd.append("--json")
        return run(cmd + args, timeout + 10, env=self.env)


def psql(cfg, sql, timeout=60):
    """Run SQL on keel's database; rows as lists of strings (tab-separated output)."""
    rc, out, err = run(["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                        cfg.database_url], timeout, input_text=sql)
    if rc != 0:
        raise HarnessError("psql failed (%s): %s" % (rc, err.strip()[:800]))
    return [line.split("\t") for line in out.splitlines() if line != ""]


def sql_text(s):
    return "'" + s.replace("'", "''") + "'"


def http_get_json(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read().decode())


class Stack:
    """The chaos stack, through tools/devstack with the chaos run directory and ports."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.env = dict(os.environ, **cfg.stack_env)
        self.started = False
        self.devstack = os.path.join(ROOT, "tools", "devstack")

    def _devstack(self, *args, timeout=900):
        """tools/devstack ARGS, its output shown as it comes; killed after `timeout` s."""
        p = subprocess.Popen([self.devstack] + list(args), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=self.env, cwd=ROOT, start_new_session=True)
        timer = threading.Timer(timeout, lambda: os.killpg(p.pid, signal.SIGKILL))
        timer.start()
        try:
            for line in p.stdout:
                say("  | " + line.rstrip())
            rc = p.wait()
        finally:
            timer.cancel()
        if rc == -signal.SIGKILL:
            say("  | tools/devstack %s killed after %ds" % (" ".join(args), timeout))
        return rc

    def up(self):
        rc = run([self.devstack, "status"], 60, env=self.env)[0]
        if rc == 0:
            say("stack: reusing the chaos stack in %s (Temporal %s, PostgreSQL %s)" %
                (self.cfg.run_dir, self.cfg.address, self.cfg.database_url))
            return
        say("stack: starting the chaos stack in %s (Temporal %s, PostgreSQL %s)" %
            (self.cfg.run_dir, self.cfg.address, self.cfg.database_url))
        self.started = True
        if self._devstack("up") != 0:
            raise HarnessError("tools/devstack up failed for the chaos stack (see above)")

    def restart(self, component, downtime):
        """Clean stop of one component, `downtime` seconds, start again. True when it is back."""
        if self._devstack("down", component, timeout=120) != 0:
            say("stack: devstack down %s failed" % component)
        time.sleep(downtime)
        for attempt in range(3):
            if self._devstack("up", timeout=300) == 0:
                return True
            say("stack: devstack up failed after stopping %s (attempt %d)" %
                (component, attempt + 1))
            time.sleep(3)
        return False

    def down(self):
        if self.started and not self.cfg.keep_stack:
            say("stack: stopping the chaos stack")
            self._devstack("down", timeout=180)
        elif self.started:
            say("stack: left running (CHAOS_KEEP_STACK); stop it with: %s tools/devstack down" %
                " ".join("%s=%r" % kv for kv in self.cfg.stack_env.items()
                         if kv[0] != "KEELCTL"))


class ModelServer:
    """keel's offline model server on a port, started with tools/model-server/run; each start
    gets its own directory (run up truncates its log)."""

    def __init__(self, cfg, name, port, base):
        self.cfg, self.name, self.port, self.base = cfg, name, port, base
        self.gen = 0
        self.dir = None
        self.script = os.path.join(ROOT, "tools", "model-server", "run")
        self.env = dict(os.environ, KEEL_MODEL_SERVER_PORT=str(port))
        self.env.pop("KEEL_MODEL_SERVER_KEY", None)

    def up(self):
        self.gen += 1
        self.dir = os.path.join(self.base, "%s-%d" % (self.name, self.gen))
        rc, out, err = run([self.script, "up", self.dir], 60, env=self.env)
        if rc != 0:
            raise HarnessError("%s: tools/model-server/run up on port %d failed (CHAOS_MODEL_PORT "
                               "and CHAOS_HOOK_PORT choose the ports): %s" %
                               (self.name, self.port, (out + err).strip()[-1500:]))

    def pid(self):
        try:
            with open(os.path.join(self.dir, "model-server.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError, TypeError):
            return None

    def kill(self):
        p = self.pid()
        if p:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
            for _ in range(50):
                try:
                    os.kill(p, 0)
                except ProcessLookupError:
                    break
                # our child only if `run up` left it to us; it was re-parented otherwise
                time.sleep(0.1)
        return p

    def down(self):
        if self.dir:
            run([self.script, "down", self.dir], 30, env=self.env)


# ---------------------------------------------------------------------------------------------
# keel-worker processes


class Workers:
    def __init__(self, cfg, queue, hook_url, out_dir, failpoints, rng):
        self.cfg, self.queue, self.out_dir, self.rng = cfg, queue, out_dir, rng
        self.failpoints = failpoints
        self.lock = threading.Lock()
        self.env = dict(os.environ, TEMPORAL_ADDRESS=cfg.address, TEMPORAL_NAMESPACE=NAMESPACE,
                        KEEL_TASK_QUEUE=queue, DATABASE_URL=cfg.database_url,
                        OPENAI_BASE_URL="http://%s:%d/v1" % (HOST, cfg.model_port),
                        OPENAI_API_KEY="sk-keel-chaos", KEEL_MODEL="keel-scripted-small",
                        KEEL_MODEL_STRONG="keel-scripted-large", KEEL_NOTIFY_WEBHOOK_URL=hook_url,
                        KEEL_LOG_LEVEL="info")
        for k in ("TEMPORAL_API_KEY", "TEMPORAL_TLS", "KEEL_FAILPOINT", "TEMPORAL_CONFIG_FILE",
                  "TEMPORAL_PROFILE"):
            self.env.pop(k, None)
        self.slots = [None] * cfg.workers  # dict(proc, log, failpoint, gen, killed)
        self.restart_at = [0.0] * cfg.workers
        self.gen = 0
        self.logs = []  # every worker process's log, in start order
        self.kills = 0
        self.failpoint_hits = {}
        self.armed = {}
        self.start_failures = 0
        self.unexpected = []  # exits nobody asked for
        self.deaths = []  # (epoch seconds, slot, pid, why): every worker that died
        self.calm = False

    def start(self, i, failpoint=None):
        self.gen += 1
        log = os.path.join(self.out_dir, "worker-%d-%03d.log" % (i, self.gen))
        env = dict(self.env)
        if failpoint:
            env["KEEL_FAILPOINT"] = failpoint
            self.armed[failpoint] = self.armed.get(failpoint, 0) + 1
        f = open(log, "w")
        proc = subprocess.Popen([self.cfg.worker_bin], stdin=subprocess.DEVNULL, stdout=f,
                                stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        f.close()
        self.slots[i] = dict(proc=proc, log=log, failpoint=failpoint, gen=self.gen, killed=False,
                             started=time.monotonic())
        self.logs.append(log)
        say("worker %d: started pid %d%s" % (i, proc.pid, (" with KEEL_FAILPOINT=%s" % failpoint)
                                              if failpoint else ""))

    def start_all(self):
        with self.lock:
            for i in range(len(self.slots)):
                self.start(i)

    def choose_failpoint(self):
        if self.calm or not self.failpoints or self.rng.random() >= self.cfg.failpoint_rate:
            return None
        return self.rng.choice(self.failpoints)

    def kill_one(self):
        with self.lock:
            live = [i for i, s in enumerate(self.slots) if s and s["proc"].poll() is None]
            if not live:
                return None
            i = self.rng.choice(live)
            s = self.slots[i]
            s["killed"] = True
            s["proc"].send_signal(signal.SIGKILL)
            s["proc"].wait(timeout=30)
            self.kills += 1
            self.deaths.append((time.time(), i, s["proc"].pid, "SIGKILL"))
            self.restart_at[i] = time.monotonic() + self.rng.uniform(0.5, 3.0)
            say("worker %d: SIGKILL pid %d (kill #%d)" % (i, s["proc"].pid, self.kills))
            return i

    def supervise(self):
        """Reap exited workers, classify the exit, restart when due."""
        now = time.monotonic()
        with self.lock:
            for i, s in enumerate(self.slots):
                if s is None:
                    if now >= self.restart_at[i]:
                        self.start(i, self.choose_failpoint())
                    continue
                rc = s["proc"].poll()
                if rc is None:
                    continue
                if not s.get("reaped"):
                    s["reaped"] = True
                    self.classify_exit(i, s, rc)
                if now >= self.restart_at[i]:
                    self.slots[i] = None
                    self.start(i, self.choose_failpoint())

    def classify_exit(self, i, s, rc):
        pid = s["proc"].pid
        if s["killed"]:
            return
        text = read_text(s["log"])
        m = re.search(r"keel: failpoint (\S+): exiting as if killed", text)
        if rc == 137 and m:
            name = m.group(1)
            self.failpoint_hits[name] = self.failpoint_hits.get(name, 0) + 1
            # noticed within the supervision period (0.2 s) of the exit
            self.deaths.append((time.time(), i, pid, "failpoint " + name))
            say("worker %d: pid %d hit failpoint %s (exit 137)" % (i, pid, name))
            self.restart_at[i] = time.monotonic() + self.rng.uniform(0.5, 2.0)
            return
        why = next((w for w in ("cannot reach the Temporal server",
                                "cannot start the agent activities") if w in text), None)
        if why and rc != 0:
            # The server or the database is away (their restarts): try again a little later.
            self.start_failures += 1
            self.restart_at[i] = time.monotonic() + 2.0
            say("worker %d: pid %d did not start: %s (exit %d); retrying" % (i, pid, why, rc))
            return
        tail = "\n".join(text.splitlines()[-15:])
        self.unexpected.append(dict(slot=i, pid=pid, exit=rc, log=s["log"], tail=tail,
                                    failpoint=s["failpoint"]))
        self.restart_at[i] = time.monotonic() + 1.0
        say("worker %d: pid %d EXITED UNEXPECTEDLY (status %s); log %s" % (i, pid, rc, s["log"]))

    def stop_all(self, sig=signal.SIGTERM, wait=15):
        with self.lock:
            procs = [s["proc"] for s in self.slots if s and s["proc"].poll() is None]
            for p in procs:
                try:
                    p.send_signal(sig)
                except ProcessLookupError:
                    pass
            end = time.monotonic() + wait
            for p in procs:
                try:
                    p.wait(timeout=max(0.1, end - time.monotonic()))
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=10)

    def calm_down(self):
        """From now on: no failpoints; restart the armed workers unarmed."""
        with self.lock:
            self.calm = True
            for i, s in enumerate(self.slots):
                if s and s["failpoint"] and s["proc"].poll() is None:
                    s["killed"] = True
                    s["proc"].send_signal(signal.SIGKILL)
                    s["proc"].wait(timeout=30)
                    self.kills += 1
                    self.deaths.append((time.time(), i, s["proc"].pid, "SIGKILL (calm phase)"))
                    self.restart_at[i] = time.monotonic()
                    say("worker %d: calm phase: replacing armed pid %d" % (i, s["proc"].pid))


def read_text(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


# ---------------------------------------------------------------------------------------------
# The runs and the business system


class Run:
    def __init__(self, index, inv, cls, rng, model_faults, prefix="chaos"):
        self.index = index
        self.cls = cls
        self.spec = CLASSES[cls]
        self.cc = "CC-X%s-%04d" % (inv.upper(), index)
        self.mgr = "m-%s@example.com" % self.cc
        self.dir = "d-%s@example.com" % self.cc
        self.id = "%s-%s-%04d-%s" % (prefix, inv, index, cls)
        self.request = self.spec["request"]
        self.fault = None
        if rng.random() < model_faults:
            self.fault = rng.choice(["500", "429", "502"])
            self.request += " [[keel:fault=%s times=1 id=%s]]" % (self.fault, self.id)
        # how each decision is sent: the approve/reject signal or the decide update
        self.channels = [rng.choice(["signal", "update"]) for _ in self.spec["decisions"]]
        self.thinks = [rng.random() for _ in self.spec["decisions"]]
        self.submit_at = 0.0
        self.started = False
        self.start_attempts = 0
        self.status = None  # Running / Completed / ...
        self.stage = None
        self.closed = False
        self.busy = False
        self.next_check = 0.0
        self.ready_at = {}  # decision index -> when the approver acts
        self.sent = {}  # decision index -> [times sent]
        self.decision_log = []
        self.final = {}

    def approver(self, level):
        return self.mgr if level == "manager" else self.dir


def plan_runs(n, inv, rng, model_faults, prefix="chaos"):
    """The plan: n runs of the six classes (each at least once when n allows, then by weight)."""
    names = list(CLASSES)
    classes = names[:n] if n <= len(names) else list(names)
    classes += rng.choices(names, weights=[CLASSES[c]["weight"] for c in names],
                           k=max(0, n - len(classes)))
    rng.shuffle(classes)
    return [Run(i + 1, inv, c, rng, model_faults, prefix) for i, c in enumerate(classes)]


def make_cost_centres(cfg, runs, label):
    """A cost centre per run in keel's database: its budget, its manager and its director."""
    sql = ["BEGIN;"]
    for r in runs:
        sql.append("INSERT INTO cost_centers (id, name, owner) VALUES (%s, '%s %s', %s);" %
                   (sql_text(r.cc), label, r.cls, sql_text(r.dir)))
        sql.append("INSERT INTO budgets (cost_center, period, amount_usd) VALUES (%s, "
                   "proc_current_period(), %s);" % (sql_text(r.cc), r.spec["budget"]))
        sql.append("INSERT INTO approvers (person, name, role, cost_center, limit_usd, "
                   "delegate) VALUES (%s, '%s Director', 'director', %s, 50000, "
                   "'chloe.cfo@example.com');" % (sql_text(r.dir), label, sql_text(r.cc)))
        sql.append("INSERT INTO approvers (person, name, role, cost_center, limit_usd, "
                   "delegate) VALUES (%s, '%s Manager', 'manager', %s, 10000, %s);" %
                   (sql_text(r.mgr), label, sql_text(r.cc), sql_text(r.dir)))
    sql.append("COMMIT;")
    psql(cfg, "\n".join(sql))


class Business:
    """Submits the runs and answers the approvals they wait for, like a business system."""

    def __init__(self, cfg, kc, runs, queue, rng):
        self.cfg, self.kc, self.runs, self.queue, self.rng = cfg, kc, runs, queue, rng
        self.pool = ThreadPoolExecutor(max_workers=8)
        self.lock = threading.Lock()
        self.list_failures = 0
        self.errors = 0
        self.last_list = 0.0

    def submit_due(self, now):
        for r in self.runs:
            if r.started or now < r.submit_at or r.busy:
                continue
            r.busy = True
            self.pool.submit(self._start, r)

    def _start(self, r):
        try:
            inp = json.dumps({"request": r.request, "requester": REQUESTER,
                              "cost_center": r.cc})
            r.start_attempts += 1
            rc, out, err = self.kc(["workflow", "start", "--id", r.id, "--type", WORKFLOW_TYPE,
                                    "--task-queue", self.queue, "--input", inp, "--request-id",
                                    r.id + "-start"], timeout=10)
            if rc == 0 or "AlreadyStarted" in err or "already started" in err.lower():
                r.started = True
                r.status = "Running"
                say("run %s: started%s" % (r.id, " (attempt %d)" % r.start_attempts
                                          if r.start_attempts > 1 else ""))
            else:
                r.submit_at = time.monotonic() + 2.0
                if r.start_attempts in (1, 5, 20):
                    say("run %s: start failed, will retry: %s" % (r.id, err.strip()[:200]))
        finally:
            r.busy = False

    def poll(self, now):
        if now - self.last_list < 2.0:
            return
        self.last_list = now
        rc, out, err = self.kc(["workflow", "list", "--query", "TaskQueue='%s'" % self.queue,
                                "--limit", str(len(self.runs) + 50)], timeout=10, json_out=True)
        if rc != 0:
            self.list_failures += 1
            return
        try:
            items = json.loads(out)
        except ValueError:
            self.list_failures += 1
            return
        by_id = {r.id: r for r in self.runs}
        for it in items:
            r = by_id.get(it.get("workflowId"))
            if r is None:
                continue
            r.status = it.get("status")
            r.stage = (it.get("searchAttributes") or {}).get("ProcurementStage")
            if r.status != "Running" and not r.closed:
                r.closed = True
                say("run %s: closed %s (stage %s)" % (r.id, r.status, r.stage))
        for r in self.runs:
            if (r.started and not r.closed and not r.busy and r.stage == "approval" and
                    r.spec["decisions"] and now >= r.next_check):
                r.busy = True
                self.pool.submit(self._act, r)

    def _act(self, r):
        try:
            self.act(r)
        except Exception as e:  # a harness bug must not stop the business loop
            self.errors += 1
            say("run %s: business system error: %r" % (r.id, e))
            r.next_check = time.monotonic() + 5
        finally:
            r.busy = False

    def interval(self):
        """How long to wait before asking a run again: 2 s, longer when many runs wait, so that
        the business system's queries stay around 10 a second."""
        waiting = sum(1 for r in self.runs if r.stage == "approval" and not r.closed)
        return max(2.0, 0.1 * waiting)

    def act(self, r):
        now = time.monotonic()
        # An approver who has seen the request decides after the think time; nothing but this
        # business system decides, so the run still waits for them.
        due = [i for i, t in r.ready_at.items() if now >= t and not r.sent.get(i)]
        if due:
            self.send(r, due[0])
            return
        rc, out, err = self.kc(["workflow", "query", "--id", r.id, "--name", "status"],
                               timeout=5)
        if rc != 0:
            r.next_check = now + 2.0  # no worker answers right now, or the server is away
            return
        try:
            st = json.loads(out)
        except ValueError:
            r.next_check = now + 2.0
            return
        if st.get("stage") != "approval":
            r.next_check = now + self.interval()
            return
        ap = st.get("approval") or {}
        done = len(ap.get("approvals") or [])
        decisions = r.spec["decisions"]
        if done >= len(decisions) or ap.get("pending") != r.approver(decisions[done][0]):
            r.next_check = now + self.interval()
            return
        if done not in r.ready_at:
            lo, hi = self.cfg.think
            r.ready_at[done] = now + lo + (hi - lo) * r.thinks[done]
            r.next_check = r.ready_at[done]
            return
        sent = r.sent.get(done) or []
        if sent and now - sent[-1] < 20.0:
            r.next_check = now + self.interval()  # sent; wait for the run to take it
            return
        self.send(r, done)  # not taken 20 s after it was sent: send it again

    def send(self, r, done):
        """Send decision `done` by its channel; on failure it is sent again soon."""
        now = time.monotonic()
        level, verdict = r.spec["decisions"][done]
        who = r.approver(level)
        sent = r.sent.setdefault(done, [])
        channel = r.channels[done]
        comment = "chaos %s by %s" % (verdict, level)
        sent.append(now)
        if channel == "signal":
            rc, out, err = self.kc(["workflow", "signal", "--id", r.id, "--name", verdict,
                                    "--input", json.dumps({"approver": who,
                                                           "comment": comment})], timeout=10)
            ok = rc == 0
            refused = False
            note = "" if ok else err.strip()[:200]
        else:
            rc, out, err = self.kc(["workflow", "update", "--id", r.id, "--name", "decide",
                                    "--update-id", "%s-decision-%d" % (r.id, done), "--input",
                                    json.dumps({"approver": who, "decision": verdict,
                                                "comment": comment})], timeout=20,
                                   json_out=True)
            ok = refused = False
            note = err.strip()[:200]
            if rc is not None and out.strip():
                try:
                    u = json.loads(out)
                    ok = not u.get("failed")
                    refused = not ok
                    note = "" if ok else "refused: %s" % u.get("failure")
                except ValueError:
                    pass
        r.decision_log.append(dict(t=round(time.monotonic() - T0, 1), level=level,
                                   verdict=verdict, channel=channel, ok=ok, note=note))
        say("run %s: %s %s by %s (%s)%s" % (
            r.id, level, verdict, channel,
            "sent" if ok else "refused, will ask the run" if refused else "FAILED, will retry",
            "" if ok else ": " + note))
        if not ok and not refused:
            sent.pop()  # not delivered: send it again soon
        # refused by the validator: the status query says what the run waits for now
        r.next_check = time.monotonic() + (3.0 if ok else 2.0)


# ---------------------------------------------------------------------------------------------
# Chaos


class Chaos(threading.Thread):
    def __init__(self, cfg, stack, workers, model, runs, rng, start_time):
        super().__init__(daemon=True)
        self.cfg, self.stack, self.workers, self.model = cfg, stack, workers, model
        self.runs, self.rng = runs, rng
        self.stop_event = threading.Event()
        w = cfg.submit_window
        self.pg_at = start_time + max(3.0, rng.uniform(0.2, 0.4) * w)
        self.temporal_at = start_time + max(self.pg_at - start_time + 10.0,
                                            rng.uniform(0.6, 0.85) * w)
        self.next_kill = start_time + rng.uniform(*cfg.kill_every)
        self.next_model_kill = start_time + rng.uniform(*cfg.model_kill_every)
        self.model_restart_at = None
        self.infra = None
        self.pg_started = self.temporal_started = False
        self.pg_restarts = 0
        self.temporal_restarts = 0
        self.model_kills = 0
        self.restart_failures = []
        self.in_flight_at = {}
        self.chaos_on = True

    def open_runs(self):
        return sum(1 for r in self.runs if r.started and not r.closed)

    def run(self):
        while not self.stop_event.is_set():
            now = time.monotonic()
            try:
                self.step(now)
            except Exception as e:  # keep supervising whatever happens
                say("chaos: error: %r" % (e,))
            self.stop_event.wait(0.2)

    def step(self, now):
        self.workers.supervise()
        if self.model_restart_at is not None and now >= self.model_restart_at:
            self.model_restart_at = None
            try:
                self.model.up()
                say("model server: back (pid %s)" % self.model.pid())
            except HarnessError as e:
                say("model server: restart failed, trying again: %s" % e)
                self.model_restart_at = now + 2.0
        if not self.chaos_on:
            return
        # The two restarts run beside the worker and model server chaos, one after the other.
        infra_idle = self.infra is None or not self.infra.is_alive()
        if infra_idle and not self.pg_started and now >= self.pg_at:
            self.pg_started = True
            self.infra = threading.Thread(target=self.restart, daemon=True,
                                          args=("postgres", self.rng.uniform(1.0, 4.0)))
            self.infra.start()
        elif infra_idle and not self.temporal_started and now >= self.temporal_at:
            self.temporal_started = True
            self.infra = threading.Thread(target=self.restart, daemon=True,
                                          args=("temporal", self.rng.uniform(1.0, 5.0)))
            self.infra.start()
        if now >= self.next_kill:
            self.next_kill = now + self.rng.uniform(*self.cfg.kill_every)
            self.workers.kill_one()
        if now >= self.next_model_kill and self.model_restart_at is None:
            self.next_model_kill = now + self.rng.uniform(*self.cfg.model_kill_every)
            pid = self.model.kill()
            self.model_kills += 1
            self.model_restart_at = now + self.rng.uniform(*self.cfg.model_down)
            say("model server: SIGKILL pid %s (kill #%d), back in %.1fs" %
                (pid, self.model_kills, self.model_restart_at - now))

    def restart(self, component, down):
        self.in_flight_at[component] = self.open_runs()
        say("%s: clean restart (%.1fs down, %d runs in flight)" %
            (component, down, self.in_flight_at[component]))
        ok = self.stack.restart(component, down)
        if not ok:
            self.restart_failures.append(component)
        say("%s: back" % component if ok else "%s: DID NOT COME BACK" % component)
        if component == "postgres":
            self.pg_restarts += 1
        else:
            self.temporal_restarts += 1

    def calm(self):
        """Stop the chaos (not the supervision): the remaining runs get to finish."""
        self.chaos_on = False
        if self.model_restart_at is not None:
            self.model_restart_at = time.monotonic()
        self.workers.calm_down()


# ---------------------------------------------------------------------------------------------
# Counting


def decode_payload(p):
    try:
        return base64.b64decode(p.get("data", "")).decode("utf-8", "replace")
    except (ValueError, AttributeError):
        return ""


def analyse_history(events):
    """What the final history says: notifications scheduled (activity id -> text, completed?),
    workflow task failures, timeouts, non-determinism."""
    notes = {}
    by_sched = {}
    wft_failed = []
    wft_timeouts = 0
    for e in events:
        t = e.get("eventType", "")
        if t == "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED":
            a = e.get("activityTaskScheduledEventAttributes", {})
            if a.get("activityType", {}).get("name") == "tool.notify":
                pl = (a.get("input") or {}).get("payloads") or [{}]
                try:
                    text = json.loads(decode_payload(pl[0])).get("text")
                except ValueError:
                    text = None
                notes[a.get("activityId")] = dict(text=text, state="scheduled",
                                                  scheduled=e.get("eventTime"))
                by_sched[e.get("eventId")] = a.get("activityId")
        elif t in ("EVENT_TYPE_ACTIVITY_TASK_COMPLETED", "EVENT_TYPE_ACTIVITY_TASK_FAILED",
                   "EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT", "EVENT_TYPE_ACTIVITY_TASK_CANCELED"):
            attrs = next((v for k, v in e.items() if k.endswith("EventAttributes")), {})
            aid = by_sched.get(str(attrs.get("scheduledEventId")))
            if aid in notes:
                notes[aid]["state"] = t.replace("EVENT_TYPE_ACTIVITY_TASK_", "").lower()
        elif t == "EVENT_TYPE_WORKFLOW_TASK_FAILED":
            a = e.get("workflowTaskFailedEventAttributes", {})
            msg = (a.get("failure") or {}).get("message", "")
            wft_failed.append(dict(event=e.get("eventId"), cause=a.get("cause", ""),
                                   message=msg[:300]))
        elif t == "EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT":
            wft_timeouts += 1
    nde = [f for f in wft_failed if is_nde(f["cause"] + " " + f["message"])]
    return notes, wft_failed, wft_timeouts, nde


def is_nde(text):
    t = text.lower()
    return "non_deterministic" in t or "nondetermin" in t or "non-determin" in t or \
        "tmprl1100" in t


def worker_log_failures(logs):
    """workflow id -> [errors of 'workflow task failed' records] across every worker log."""
    out = {}
    pat = re.compile(r'msg="workflow task failed".*?workflow_id=(\S+)')
    for log in logs:
        for line in read_text(log).splitlines():
            m = pat.search(line)
            if m:
                em = re.search(r'error=("(?:[^"\\]|\\.)*"|\S+)', line)
                out.setdefault(m.group(1), []).append(em.group(1)[:300] if em else line[:300])
    return out


def deaths_after(workers, epoch, what, window=20.5):
    """The first two worker deaths in the `window` seconds after `epoch` (tool.notify's
    start-to-close timeout is 20 s): the likely holder of what was in flight then."""
    return ["%s of worker %d pid %d %.3fs after %s" % (why, slot, pid, t - epoch, what)
            for t, slot, pid, why in workers.deaths if 0 <= t - epoch <= window][:2]


def event_epoch(text):
    """'2026-12-03T15:38:38.787123456Z' -> seconds since the epoch (None when unreadable)."""
    m = re.match(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?Z$", text or "")
    if not m:
        return None
    whole = calendar.timegm(tuple(int(g) for g in m.groups()[:6]) + (0, 0, 0))
    return whole + float(m.group(7) or 0)


def collect(cfg, kc, runs, inv, hist_dir, hook_url, workers, prefix="chaos"):
    """Everything judge() needs, per run, into run.final. Also used by tests/multiworker/run
    (`prefix`: the first word of its workflow ids)."""
    say("counting: describe, history and replay of %d runs" % len(runs))
    hook_name = hook_url.rsplit("/", 1)[1]
    posts = http_get_json("http://%s:%d/_keel/hooks/%s" % (HOST, cfg.hook_port, hook_name))
    # A notification is delivered once per Idempotency-Key (keel sends the activity's key on
    # every attempt, for receivers that honour it); a second post of the same key comes from a
    # worker that died between its post and its record of it: counted apart, as a re-post.
    post_count, repost_count, seen = {}, {}, set()
    keys = posts.get("keys") or [None] * len(posts.get("posts", []))
    for p, key in zip(posts.get("posts", []), keys):
        t = p.get("text")
        if key is not None and (t, key) in seen:
            repost_count[t] = repost_count.get(t, 0) + 1
            continue
        seen.add((t, key))
        post_count[t] = post_count.get(t, 0) + 1
    like = "CC-X%s-%%" % inv.upper()
    po = {}
    for cc, n, total, numbers in psql(
            cfg, "SELECT cost_center, count(*), coalesce(sum(total_usd), 0), "
                 "string_agg(po_number, ' ' ORDER BY po_number) FROM purchase_orders "
                 "WHERE cost_center LIKE %s GROUP BY cost_center" % sql_text(like)):
        po[cc] = (int(n), float(total), numbers.split())
    committed = {cc: float(v) for cc, v in psql(
        cfg, "SELECT cost_center, sum(committed_usd) FROM budgets WHERE cost_center LIKE %s "
             "GROUP BY cost_center" % sql_text(like))}
    reqs = {}
    for cc, rid, status in psql(cfg, "SELECT cost_center, id, status FROM requisitions WHERE "
                                     "cost_center LIKE %s" % sql_text(like)):
        reqs.setdefault(cc, []).append((rid, status))
    claims = {}
    for key, kind, at, epoch in psql(
            cfg, "SELECT key, kind, claimed_at, extract(epoch FROM claimed_at) FROM keel_effects "
                 "WHERE state = 'claimed' AND key LIKE %s" %
                 sql_text("%s/%s-%s-%%" % (NAMESPACE, prefix, inv))):
        wf = key.split("/")[1] if key.count("/") >= 3 else key
        claims.setdefault(wf, []).append(dict(key=key, kind=kind, claimed_at=at,
                                              deaths_after=deaths_after(workers, float(epoch),
                                                                        "the claim")))
    # With leases (branch `claims`, migration 004) a claim whose holder died is swept to
    # 'abandoned' (or given back, 'released'): the message may never have gone out. The
    # notification check against the webhook's posts says whether it did; these are counted too.
    ended = {}
    for key, state in psql(cfg, "SELECT key, state FROM keel_effects WHERE state IN "
                                "('abandoned', 'released') AND key LIKE %s" %
                                sql_text("%s/%s-%s-%%" % (NAMESPACE, prefix, inv))):
        wf = key.split("/")[1] if key.count("/") >= 3 else key
        ended.setdefault(wf, []).append(dict(key=key, state=state))
    log_fail = worker_log_failures(workers.logs)

    def one(r):
        f = r.final
        f.update(id=r.id, cls=r.cls, cost_center=r.cc, fault=r.fault,
                 decisions=r.decision_log, started=r.started)
        if not r.started:
            f.update(status="NeverStarted", problems=["never started"])
            return
        rc, out, err = kc(["workflow", "describe", "--id", r.id], timeout=15, json_out=True)
        try:
            d = json.loads(out) if rc == 0 else {}
        except ValueError:
            d = {}
        f["status"] = d.get("status", "unknown (%s)" % err.strip()[:120])
        f["stage"] = (d.get("searchAttributes") or {}).get("ProcurementStage")
        f["history_length"] = d.get("historyLength")
        result = None
        if f["status"] not in ("Running",) and rc == 0:
            rc2, out2, err2 = kc(["workflow", "result", "--id", r.id, "--wait-timeout", "5s"],
                                 timeout=15, json_out=True)
            try:
                res = json.loads(out2)
                result = res.get("result")
                f["failure"] = res.get("failure")
            except ValueError:
                f["failure"] = err2.strip()[:300]
        f["result"] = result
        f["outcome"] = (result or {}).get("outcome") if isinstance(result, dict) else None
        hist = os.path.join(hist_dir, r.id + ".json")
        rc, out, err = kc(["workflow", "history", "--id", r.id, "--output", hist], timeout=30)
        events = []
        if rc == 0:
            try:
                with open(hist) as fh:
                    events = json.load(fh).get("events", [])
            except (OSError, ValueError):
                pass
            rc, out, err = run([cfg.keelctl, "replay", "--history", hist, "--workflow",
                                WORKFLOW_TYPE], 120)
            f["replay"] = "ok" if rc == 0 else "FAILED: " + (out + err).strip()[:500]
        else:
            f["replay"] = "no history: " + err.strip()[:200]
        f["history_file"] = hist
        notes, wft_failed, wft_timeouts, nde = analyse_history(events)
        f["wft_failed"] = wft_failed
        f["wft_timeouts"] = wft_timeouts
        f["worker_log_wft_failures"] = log_fail.get(r.id, [])
        f["nde"] = len(nde) + sum(1 for e in log_fail.get(r.id, []) if is_nde(e))
        f["notifications"] = []
        for aid, n in sorted(notes.items(), key=lambda kv: int(kv[0] or 0)):
            nt = dict(activity_id=aid, text=n["text"], state=n["state"],
                      scheduled=n["scheduled"], posts=post_count.get(n["text"], 0),
                      reposts=repost_count.get(n["text"], 0))
            if nt["posts"] != 1 and event_epoch(n["scheduled"]) is not None:
                nt["deaths_after"] = deaths_after(workers, event_epoch(n["scheduled"]),
                                                  "it was scheduled")
            f["notifications"].append(nt)
        f["purchase_orders"], f["po_total"], f["po_numbers"] = po.get(r.cc, (0, 0.0, []))
        f["committed_usd"] = committed.get(r.cc, 0.0)
        f["requisitions"] = reqs.get(r.cc, [])
        f["stuck_claims"] = claims.get(r.id, [])
        f["abandoned_claims"] = ended.get(r.id, [])

    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(one, runs))


def judge(runs):
    """Per run: what is wrong with it (its `problems`) and its counters."""
    for r in runs:
        f = r.final
        c = dict(runs=1, completed=0, lost=0, wrong_outcome=0, requisition_wrong=0,
                 duplicate_pos=0, missing_pos=0, double_commits=0, missing_commits=0,
                 notifications=0, notif_missing=0, notif_duplicated=0, notif_reposted=0,
                 stuck_claims=0,
                 claims_abandoned=0, wft_failures=0, wft_timeouts=0, nde=0, replay_failures=0)
        problems = f.setdefault("problems", [])
        f["counts"] = c
        if not r.started:
            c["lost"] = 1
            continue
        spec = r.spec
        if f.get("status") == "Completed":
            c["completed"] = 1
            if f.get("outcome") != spec["outcome"]:
                c["wrong_outcome"] = 1
                problems.append("outcome %s, expected %s (reason: %s)" % (
                    f.get("outcome"), spec["outcome"], (f.get("result") or {}).get("reason")))
        else:
            c["lost"] = 1
            problems.append("not completed: %s at stage %s%s" % (
                f.get("status"), f.get("stage"),
                (": %s" % f["failure"]) if f.get("failure") else ""))
        ordered = f.get("outcome") == "ordered"
        n = f.get("purchase_orders", 0)
        want = 1 if ordered else 0
        if n > want:
            c["duplicate_pos"] = n - want
            problems.append("%d purchase orders, expected %d" % (n, want))
        elif n < want:
            c["missing_pos"] = want - n
            problems.append("no purchase order for an ordered run")
        result = f.get("result") or {}
        if ordered and n == 1 and result.get("po_number") not in f.get("po_numbers", []):
            c["wrong_outcome"] = 1
            problems.append("the result says %s, the database has %s" %
                            (result.get("po_number"), f.get("po_numbers")))
        want_req = spec["outcome"] if f.get("status") == "Completed" else None
        req_states = [st for _, st in f.get("requisitions", [])]
        if want_req and req_states != [want_req]:
            c["requisition_wrong"] = 1
            problems.append("requisitions %s, expected one %s" % (f.get("requisitions"),
                                                                   want_req))
        committed, total = f.get("committed_usd", 0.0), f.get("po_total", 0.0)
        if committed > total + 0.005:
            c["double_commits"] = 1
            problems.append("budget committed USD %.2f for purchase orders of USD %.2f" %
                            (committed, total))
        elif committed < total - 0.005:
            c["missing_commits"] = 1
            problems.append("budget committed USD %.2f, purchase orders USD %.2f" %
                            (committed, total))
        if ordered and abs(total - spec["amount"]) > 0.005 and n == 1:
            problems.append("purchase order of USD %.2f, expected %.2f" % (total, spec["amount"]))
        due = 1 + len(spec["decisions"])  # each approver asked, and the requester told
        if f.get("status") == "Completed" and len(f.get("notifications", [])) < due:
            c["notif_missing"] += due - len(f.get("notifications", []))
            problems.append("%d notifications scheduled, %d due for %s" %
                            (len(f.get("notifications", [])), due, r.cls))
        for nt in f.get("notifications", []):
            c["notifications"] += 1
            c["notif_reposted"] += nt.get("reposts", 0)
            deaths = "; worker deaths after it was scheduled (%s): %s" % (
                nt.get("scheduled"), "; ".join(nt.get("deaths_after") or []) or "none")
            if nt["posts"] == 0:
                c["notif_missing"] += 1
                problems.append("notification (activity %s, %s) never posted: %.90s%s" %
                                (nt["activity_id"], nt["state"], nt["text"], deaths))
            elif nt["posts"] > 1:
                c["notif_duplicated"] += nt["posts"] - 1
                problems.append("notification (activity %s, %s) posted %d times: %.90s%s" %
                                (nt["activity_id"], nt["state"], nt["posts"], nt["text"],
                                 deaths))
        for cl in f.get("stuck_claims", []):
            c["stuck_claims"] += 1
            aid = cl["key"].rsplit("/", 1)[-1]
            nt = next((x for x in f.get("notifications", []) if x["activity_id"] == aid), None)
            known = (" (defect 10: the run closed while its notification was in flight, "
                     "activity %s)" % nt["state"]) if cl["kind"] == "notify" and nt and \
                nt["state"] != "completed" else ""
            problems.append("claim %s (%s) still claimed since %s%s; worker deaths after it: %s" %
                            (cl["key"], cl["kind"], cl["claimed_at"], known,
                             "; ".join(cl.get("deaths_after") or []) or "none"))
        c["claims_abandoned"] = len(f.get("abandoned_claims", []))
        c["wft_failures"] = max(len(f.get("wft_failed", [])),
                                len(f.get("worker_log_wft_failures", [])))
        c["wft_timeouts"] = f.get("wft_timeouts", 0)
        c["nde"] = 1 if f.get("nde") else 0
        if c["nde"]:
            problems.append("non-determinism: %s" % (
                [x for x in f.get("wft_failed", []) if is_nde(x["cause"] + x["message"])] or
                [x for x in f.get("worker_log_wft_failures", []) if is_nde(x)])[:2])
        if f.get("replay") != "ok":
            c["replay_failures"] = 1
            problems.append("replay: %s" % f.get("replay"))


FATAL = ["lost", "wrong_outcome", "requisition_wrong", "duplicate_pos", "missing_pos",
         "double_commits", "missing_commits", "notif_missing", "notif_duplicated",
         "stuck_claims", "nde", "replay_failures"]
ROWS = [("runs", "runs"), ("completed", "completed"), ("lost", "lost (not completed)"),
        ("wrong_outcome", "wrong outcome"), ("requisition_wrong", "requisition status wrong"),
        ("duplicate_pos", "duplicate POs"),
        ("missing_pos", "missing POs"), ("double_commits", "double budget commits"),
        ("missing_commits", "missing budget commits"), ("notifications", "notifications due"),
        ("notif_missing", "notifications missing"),
        ("notif_duplicated", "notifications duplicated"),
        ("notif_reposted", "re-posted, same key (info)"), ("stuck_claims", "stuck claims"),
        ("claims_abandoned", "claims abandoned (info)"),
        ("wft_failures", "WFT failures"), ("wft_timeouts", "WFT timeouts (info)"),
        ("nde", "non-determinism"), ("replay_failures", "replay failures")]


def class_table(runs, rows=ROWS, fatal=FATAL):
    """The counts per outcome class: (lines, per class and total, outcomes per class)."""
    classes = list(CLASSES)
    per = {k: {key: 0 for key, _ in ROWS} for k in classes + ["total"]}
    for r in runs:
        for key, _ in ROWS:
            v = r.final["counts"][key]
            per[r.cls][key] += v
            per["total"][key] += v
    outcomes = {}
    for r in runs:
        o = r.final.get("outcome") or r.final.get("status") or "?"
        outcomes.setdefault(r.cls, {}).setdefault(o, 0)
        outcomes[r.cls][o] += 1
    heads = ["auto", "1 appr", "2 appr", "budget-", "mgr-rej", "dir-rej", "TOTAL"]
    lines = []
    w0 = 26
    lines.append("%-*s" % (w0, "per outcome class") + "".join("%9s" % h for h in heads))
    lines.append("%-*s" % (w0, "expected outcome") + "".join(
        "%9s" % CLASSES[k]["outcome"] for k in classes) + "%9s" % "")
    for key, label in rows:
        mark = " *" if key in fatal and per["total"][key] else ""
        lines.append("%-*s" % (w0, label + mark) + "".join(
            "%9d" % per[k][key] for k in classes + ["total"]))
    return lines, per, outcomes


def table(runs, chaos, workers, business, wall, cfg, failpoints_missing):
    lines, per, outcomes = class_table(runs)
    w0 = 26
    fp = ", ".join("%s %d/%d" % (n, workers.failpoint_hits.get(n, 0), workers.armed.get(n, 0))
                   for n in FAILPOINTS if n not in failpoints_missing)
    chaos_lines = [
        ("worker SIGKILLs", str(workers.kills)),
        ("failpoint hits/armed", "%d (%s)" % (sum(workers.failpoint_hits.values()), fp or "-")),
        ("failpoints not in build", ", ".join(failpoints_missing) or "-"),
        ("worker unexpected exits", str(len(workers.unexpected))),
        ("worker start failures", "%d (server away)" % workers.start_failures),
        ("model server kills", str(chaos.model_kills)),
        ("model faults injected", "%d runs (500, 502 or 429 once)" %
         sum(1 for r in runs if r.fault)),
        ("PostgreSQL restarts", "%d (%s runs in flight)" % (
            chaos.pg_restarts, chaos.in_flight_at.get("postgres", "-"))),
        ("Temporal restarts", "%d (%s runs in flight)" % (
            chaos.temporal_restarts, chaos.in_flight_at.get("temporal", "-"))),
        ("business-system errors", "%d (list failures %d)" % (business.errors,
                                                               business.list_failures)),
        ("wall time", "%.0fs" % wall),
        ("seed", "CHAOS_SEED=%d CHAOS_RUNS=%d" % (cfg.seed, cfg.runs)),
    ]
    lines.append("")
    for k, v in chaos_lines:
        lines.append("%-*s %s" % (w0, k, v))
    return "\n".join(lines), per, outcomes, dict(chaos_lines)


# ---------------------------------------------------------------------------------------------


def snapshot_binaries(cfg, out_dir):
    """Run copies of keel-worker and keelctl, so that a rebuild during a long run (make all in the
    same tree) neither breaks a restart halfway through a link nor mixes two builds."""
    bin_dir = os.path.join(out_dir, "bin")
    os.makedirs(bin_dir, exist_ok=True)
    copies = {}
    for attr, name in (("worker_bin", "keel-worker"), ("keelctl", "keelctl"),
                       ("stack_keelctl", "keelctl-stack")):
        src = getattr(cfg, attr)
        if src not in copies:
            dst = os.path.join(bin_dir, name)
            shutil.copy2(src, dst)
            copies[src] = dst
        setattr(cfg, attr, copies[src])
    cfg.stack_env["KEELCTL"] = cfg.stack_keelctl


def main():
    global EVENTS_FILE
    try:
        cfg = Config()
    except HarnessError as e:
        print("chaos: %s" % e, file=sys.stderr)
        return 2
    inv = "%s%03d" % (time.strftime("%m%d%H%M%S", time.gmtime()), cfg.seed % 1000)
    out_dir = os.path.join(cfg.out_root, inv)
    hist_dir = os.path.join(out_dir, "histories")
    os.makedirs(hist_dir, exist_ok=True)
    EVENTS_FILE = open(os.path.join(out_dir, "events.log"), "w")
    snapshot_binaries(cfg, out_dir)
    say("seed %d (reproduce the same plan with CHAOS_SEED=%d CHAOS_RUNS=%d); output in %s" %
        (cfg.seed, cfg.seed, cfg.runs, out_dir))
    master = random.Random(cfg.seed)
    rng_mix, rng_chaos, rng_workers, rng_business = (random.Random(master.random())
                                                     for _ in range(4))
    queue = "chaos-%s" % inv
    hook_url = "http://%s:%d/hooks/%s" % (HOST, cfg.hook_port, queue)

    stack = Stack(cfg)
    model = ModelServer(cfg, "model-server", cfg.model_port, out_dir)
    hooks = ModelServer(cfg, "webhook-sink", cfg.hook_port, out_dir)
    workers = None
    chaos = None
    business = None
    stopping = {"signal": None}

    def on_signal(signum, frame):
        stopping["signal"] = signum
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    rc = 2
    try:
        with open(cfg.worker_bin, "rb") as f:
            binary = f.read()
        present = [n for n in FAILPOINTS if (n.encode() + b"\0") in binary]
        missing = [n for n in FAILPOINTS if n not in present]
        for n in missing:
            say("failpoint %s: not in this keel-worker build (%s); it is not armed" %
                (n, "added with the fix of defect 10, branch `claims`"
                 if n == "notify.after_claim" else "renamed or removed?"))
        say("failpoints armed at random (rate %.2f per restarted worker): %s" %
            (cfg.failpoint_rate, ", ".join(present) or "none"))

        stack.up()
        kc = Keelctl(cfg)
        for what in (["db", "migrate"], ["db", "seed"]):
            rc_, out, err = kc(what, timeout=60)
            if rc_ != 0:
                raise HarnessError("keelctl %s failed: %s" % (" ".join(what), err.strip()))
        model.up()
        hooks.up()
        say("model server on :%d, webhook sink on :%d (%s)" % (cfg.model_port, cfg.hook_port,
                                                               hook_url))

        runs = plan_runs(cfg.runs, inv, rng_mix, cfg.model_faults)
        make_cost_centres(cfg, runs, "Chaos")
        mix = {}
        for r in runs:
            mix[r.cls] = mix.get(r.cls, 0) + 1
        say("plan: %d runs on task queue %s: %s; %d with a model fault; cost centres %s..." %
            (len(runs), queue, ", ".join("%s %d" % kv for kv in mix.items()),
             sum(1 for r in runs if r.fault), runs[0].cc))

        workers = Workers(cfg, queue, hook_url, out_dir, present, rng_workers)
        workers.start_all()
        start = time.monotonic() + 1.0
        spacing = cfg.submit_window / max(1, len(runs))
        for i, r in enumerate(runs):
            r.submit_at = start + i * spacing
        deadline = T0 + cfg.deadline
        chaos = Chaos(cfg, stack, workers, model, runs, rng_chaos, start)
        business = Business(cfg, kc, runs, queue, rng_business)
        say("chaos: PostgreSQL restart at +%.0fs, Temporal restart at +%.0fs; a worker "
            "SIGKILL every %g-%gs; the model server killed every %g-%gs; deadline +%ds" %
            (chaos.pg_at - T0, chaos.temporal_at - T0, cfg.kill_every[0], cfg.kill_every[1],
             cfg.model_kill_every[0], cfg.model_kill_every[1], cfg.deadline))
        chaos.start()

        calm_at = deadline - min(180.0, cfg.deadline * 0.25)
        calm = False
        while True:
            now = time.monotonic()
            business.submit_due(now)
            business.poll(now)
            all_done = all(r.started and r.closed for r in runs)
            restarts_done = chaos.pg_restarts and chaos.temporal_restarts
            if all_done and restarts_done:
                say("all %d runs closed" % len(runs))
                break
            if now >= deadline:
                say("DEADLINE: %d of %d runs still open" %
                    (sum(1 for r in runs if not r.closed), len(runs)))
                break
            if not calm and now >= calm_at and restarts_done:
                calm = True
                say("calm phase: no more kills or failpoints, so that open runs can finish")
                chaos.calm()
            time.sleep(0.5)
        chaos.chaos_on = False
        chaos.stop_event.set()
        chaos.join(timeout=600)
        if chaos.infra is not None:
            chaos.infra.join(timeout=600)
        business.pool.shutdown(wait=True)
        wall = time.monotonic() - T0
        time.sleep(3)  # activities of closed runs still finishing on a worker
        collect(cfg, kc, runs, inv, hist_dir, hook_url, workers)
        judge(runs)
        text, per, outcomes, chaos_summary = table(runs, chaos, workers, business, wall, cfg,
                                                   missing)
        problems = [(r.id, p) for r in runs for p in r.final.get("problems", [])]
        harness_problems = []
        if chaos.pg_restarts != 1:
            harness_problems.append("PostgreSQL was not restarted")
        if chaos.temporal_restarts != 1:
            harness_problems.append("Temporal was not restarted")
        for c in chaos.restart_failures:
            harness_problems.append("%s did not come back after its restart" % c)
        for u in workers.unexpected:
            problems.append(("worker pid %d" % u["pid"],
                             "exited unexpectedly with status %s (log %s):\n%s" %
                             (u["exit"], u["log"], u["tail"])))
        print()
        print(text)
        print()
        print("outcomes per class: " + "; ".join(
            "%s: %s" % (k, ", ".join("%s %d" % kv for kv in v.items()))
            for k, v in outcomes.items()))
        if problems:
            print("\nFINDINGS (%d):" % len(problems))
            for who, p in problems:
                print("  %s: %s" % (who, p))
        for h in harness_problems:
            print("HARNESS: %s" % h)
        fatal = sum(per["total"][k] for k in FATAL) + len(workers.unexpected)
        rc = 1 if fatal else (2 if harness_problems else 0)
        report = dict(
            invocation=inv, config=cfg.describe(), exit=rc, wall_s=round(wall, 1),
            table=per, outcomes=outcomes, chaos=chaos_summary,
            failpoints=dict(present=present, missing=missing, armed=workers.armed,
                            hits=workers.failpoint_hits),
            worker_kills=workers.kills, model_server_kills=chaos.model_kills,
            postgres_restarts=chaos.pg_restarts, temporal_restarts=chaos.temporal_restarts,
            in_flight_at_restart=chaos.in_flight_at, unexpected_worker_exits=workers.unexpected,
            worker_logs=workers.logs, harness_problems=harness_problems,
            findings=[dict(run=w, problem=p) for w, p in problems],
            runs=[r.final for r in runs])
        for path in (os.path.join(out_dir, "report.json"),
                     os.path.join(cfg.out_root, "report.json")):
            with open(path, "w") as f:
                json.dump(report, f, indent=2, default=str)
        print("\nreport: %s (also %s); histories and logs: %s" % (
            os.path.join(cfg.out_root, "report.json"), os.path.join(out_dir, "report.json"),
            out_dir))
        print("chaos: %s in %.0fs (seed %d)" % (
            "PASSED" if rc == 0 else ("FAILED" if rc == 1 else "HARNESS PROBLEM"), wall,
            cfg.seed))
    except HarnessError as e:
        say("HARNESS ERROR: %s" % e)
        rc = 2
        try:
            with open(os.path.join(cfg.out_root, "report.json"), "w") as f:
                json.dump(dict(invocation=inv, config=cfg.describe(), exit=2,
                               harness_problems=[str(e)]), f, indent=2)
        except OSError:
            pass
    except KeyboardInterrupt:
        say("interrupted (%s): cleaning up" % (
            signal.Signals(stopping["signal"]).name if stopping["signal"] else "SIGINT"))
        rc = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if chaos:
            chaos.chaos_on = False
            chaos.stop_event.set()
            chaos.join(timeout=120)
            if chaos.infra is not None:
                chaos.infra.join(timeout=300)
        if business:
            business.pool.shutdown(wait=False, cancel_futures=True)
        if workers:
            workers.stop_all()
        model.down()
        hooks.down()
        stack.down()
        shutil.rmtree(os.path.join(out_dir, "bin"), ignore_errors=True)
        say("cleaned up")
    return rc


if __name__ == "__main__":
    sys.exit(main())
