#!/usr/bin/python3
"""Open an nntrain run report in headless Chromium and report what a person sees.

    report_browser.py REPORT.html SCREENSHOT.png > facts.json

Drives Chromium over the DevTools protocol on a pipe (--remote-debugging-pipe:
commands on fd 3, replies and events on fd 4, each message JSON ended by a NUL
byte), so nothing but python3 and Debian's chromium is needed. It loads the
page, waits for the report script to finish, collects every console error and
uncaught exception, measures what was drawn (for each Chart.js chart: its
datasets' labels and the number of elements Chart.js made for each, and how
many of the canvas's pixels were painted; the confusion table's cells; the
model graph's nodes; the pictures that decoded), takes a full-page
screenshot, and prints the facts as one JSON object. The test
(tests/e2e_report.sh) compares them with the run's files. Exit 77 when
Chromium is not installed (the CTest skip code)."""
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

FACTS_JS = r"""
(function () {
  const R = window.nnReport || {};
  const charts = {};
  for (const name in (R.charts || {})) {
    const c = R.charts[name];
    const ds = c.data.datasets.map(function (d, i) {
      return { label: d.label, elements: c.getDatasetMeta(i).data.length, values: d.data.length };
    });
    const cv = c.canvas, ctx = cv.getContext('2d');
    const img = ctx.getImageData(0, 0, cv.width, cv.height).data;
    let painted = 0;
    for (let i = 3; i < img.length; i += 4) if (img[i] > 0) painted++;
    const r = cv.getBoundingClientRect();
    charts[name] = { datasets: ds, painted: painted, pixels: cv.width * cv.height,
                     visible: r.width > 100 && r.height > 100 };
  }
  const cells = Array.from(document.querySelectorAll('#confusion td')).map(function (td) {
    return [Number(td.dataset.row), Number(td.dataset.col), Number(td.textContent)];
  });
  const imgs = Array.from(document.querySelectorAll('#misclassified img'));
  return JSON.stringify({
    ready: !!R.ready, errors: R.errors || [], counts: R.counts || {}, sections: R.sections || [],
    charts: charts, confusion: cells,
    graph_nodes: document.querySelectorAll('#graph svg g.node').length,
    graph_edges: document.querySelectorAll('#graph svg g.edge').length,
    graph_titles: Array.from(document.querySelectorAll('#graph svg g.node title')).map(function (t) { return t.textContent; }),
    pictures: imgs.length,
    pictures_decoded: imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length,
    captions: Array.from(document.querySelectorAll('#misclassified figcaption')).map(function (c) { return c.textContent; }),
    job_text: (document.getElementById('jobtext') || {}).textContent || null,
    height: document.documentElement.scrollHeight,
  });
})()
"""


class Browser:
    def __init__(self, exe, profile):
        r_cmd, w_cmd = os.pipe()   # we write commands, chromium reads fd 3
        r_ev, w_ev = os.pipe()     # chromium writes fd 4, we read
        def fds():  # in the child: the pipe ends at 3 and 4, kept across exec
            a, b = os.dup(r_cmd), os.dup(w_ev)  # first, in case either is 3 or 4 already
            os.dup2(a, 3)
            os.dup2(b, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)
        self.p = subprocess.Popen(
            [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars",
             "--user-data-dir=" + profile, "--remote-debugging-pipe", "about:blank"],
            preexec_fn=fds, close_fds=False, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(r_cmd)
        os.close(w_ev)
        self.w = os.fdopen(w_cmd, "wb", buffering=0)
        self.r = os.fdopen(r_ev, "rb", buffering=0)
        self.buf = b""
        self.next_id = 0
        self.events = []

    def _read(self, deadline):
        while b"\0" not in self.buf:
            if time.time() > deadline:
                raise TimeoutError("chromium did not answer")
            chunk = self.r.read(65536)
            if not chunk:
                raise EOFError("chromium closed the pipe")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, params=None, session=None, timeout=30):
        self.next_id += 1
        m = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            m["sessionId"] = session
        self.w.write(json.dumps(m).encode() + b"\0")
        deadline = time.time() + timeout
        while True:
            msg = self._read(deadline)
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError("%s: %s" % (method, msg["error"]))
                return msg.get("result", {})
            self.events.append(msg)

    def wait_event(self, name, timeout=30):
        deadline = time.time() + timeout
        for i, e in enumerate(self.events):
            if e.get("method") == name:
                return self.events.pop(i)
        while True:
            msg = self._read(deadline)
            if msg.get("method") == name:
                return msg
            self.events.append(msg)

    def close(self):
        try:
            self.call("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill()


def main():
    page, shot = os.path.abspath(sys.argv[1]), sys.argv[2]
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        print("chromium is not installed (Debian: apt-get install chromium)", file=sys.stderr)
        sys.exit(77)
    profile = tempfile.mkdtemp(prefix="nn-chromium-")
    b = Browser(exe, profile)
    try:
        target = b.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        s = b.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for dom in ("Page", "Runtime", "Log"):
            b.call(dom + ".enable", session=s)
        b.call("Emulation.setDeviceMetricsOverride",
               {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=s)
        b.call("Page.navigate", {"url": "file://" + page}, session=s)
        b.wait_event("Page.loadEventFired", timeout=60)
        facts = None
        for _ in range(100):
            v = b.call("Runtime.evaluate", {"expression": FACTS_JS, "returnByValue": True},
                       session=s)["result"].get("value")
            facts = json.loads(v) if v else None
            if facts and facts["ready"]:
                break
            time.sleep(0.1)
        # the full page, as a person scrolling it would see it
        h = min(max(int(facts["height"]) if facts else 900, 900), 16000)
        b.call("Emulation.setDeviceMetricsOverride",
               {"width": 1280, "height": h, "deviceScaleFactor": 1, "mobile": False}, session=s)
        time.sleep(0.3)
        png = b.call("Page.captureScreenshot", {"format": "png"}, session=s, timeout=60)["data"]
        with open(shot, "wb") as f:
            f.write(base64.b64decode(png))
        errors = []
        for e in b.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                errors.append("exception: " + json.dumps(p.get("exceptionDetails", {}))[:300])
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                errors.append("console.%s: %s" % (p["type"], json.dumps(p.get("args"))[:300]))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                errors.append("log: " + p["entry"].get("text", "")[:300])
        facts = facts or {"ready": False}
        facts["console_errors"] = errors
        facts["screenshot_bytes"] = os.path.getsize(shot)
        print(json.dumps(facts))
    finally:
        b.close()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
