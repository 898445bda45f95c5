"""The perceptual study: trial sequences, the answers file (append-only, fsync'd, restart-safe),
the HTTP API and its refusals, the report against a hand-made answer file, the command line, and
the page in a real browser (Debian's headless Chromium driven by Selenium) with two participants
at once."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from tf_pix2pix.tools import study
from tf_pix2pix.cli import UserError

from conftest import chromium_browser, write_image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# README screenshots: set TF_PIX2PIX_SCREENSHOTS=docs/images to write them there.
SCREENSHOTS = os.environ.get("TF_PIX2PIX_SCREENSHOTS", "")


def _scenes(root, n=6, size=96):
    """Real photos (the synthetic scenes) and two "methods": blurred and colour-shifted copies,
    as generated images stand in for them here."""
    from data_prep.make_synthetic import render_scene

    folders = {name: root / name for name in ("real", "blurry", "tinted")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        _, _, photo = render_scene(7, "test", i, size, size)
        padded = np.pad(photo.astype(np.float32), [(2, 2), (2, 2), (0, 0)], mode="edge")
        blur = sum(padded[dy:dy + size, dx:dx + size] for dy in (0, 2, 4)
                   for dx in (0, 2, 4)) / 9
        tint = np.clip(photo.astype(np.float32) * [1.1, 0.95, 0.8], 0, 255)
        write_image(str(folders["real"] / f"{i:03d}.png"), photo)
        write_image(str(folders["blurry"] / f"{i:03d}.png"), blur.astype(np.uint8))
        write_image(str(folders["tinted"] / f"{i:03d}.jpg"), tint.astype(np.uint8), "jpeg")
    return {k: str(v) for k, v in folders.items()}


def _config(folders, out, **kw):
    kw.setdefault("fakes", (("blurry", folders["blurry"]), ("tinted", folders["tinted"])))
    return study.StudyConfig(real=folders["real"], output_dir=str(out), **kw)


def test_trials_interleave_methods_and_repeat_for_a_participant(tmp_path):
    folders = _scenes(tmp_path)
    os.remove(os.path.join(folders["tinted"], "005.jpg"))  # 005 is not common: never shown
    s = study.Study(_config(folders, tmp_path / "out", practice=4, trials=12))
    assert s.stems == ["000", "001", "002", "003", "004"]
    trials = s.sequence("ann")
    assert len(trials) == 16 and [t.index for t in trials] == list(range(16))
    assert [t.phase for t in trials] == ["practice"] * 4 + ["test"] * 12
    for block in range(0, 16, 2):  # every pair of trials holds both methods
        assert {t.method for t in trials[block:block + 2]} == {"blurry", "tinted"}
    for method in ("blurry", "tinted"):
        stems = [t.stem for t in trials if t.method == method]
        assert sorted(stems[:5]) == s.stems  # without replacement, then again
    sides = [t.real_side for t in trials]
    assert set(sides) == {"left", "right"}
    again = study.Study(_config(folders, tmp_path / "out", practice=4, trials=12))
    assert again.sequence("ann") == trials  # the same after a restart
    assert again.sequence("bob") != trials


def test_run_predict_output_folders_give_real_and_generated_images(tmp_path):
    results = tmp_path / "results"
    (results / "images").mkdir(parents=True)
    (results / "index.html").write_text("<html></html>")
    for name in ("a", "b"):
        for kind, value in (("input", 0), ("output", 100), ("target", 200)):
            write_image(str(results / "images" / f"{name}_{kind}.png"),
                        np.full([8, 8, 3], value, np.uint8))
    s = study.Study(study.StudyConfig(real=str(results), fakes=(("p2p", str(results)),),
                                      output_dir=str(tmp_path / "out")))
    assert s.stems == ["a", "b"]
    assert s.files[("real", "a")][0].endswith("a_target.png")
    assert s.files[("p2p", "b")][0].endswith("b_output.png")


def test_bad_input_is_refused_before_anything_is_written(tmp_path):
    folders = _scenes(tmp_path, n=2)
    other = tmp_path / "other"
    other.mkdir()
    write_image(str(other / "zzz.png"), np.zeros([8, 8, 3], np.uint8))
    cases = [
        (dict(fakes=(("x", str(other)),)), "share no image name"),
        (dict(fakes=(("../x", folders["blurry"]),)), "no path characters"),
        (dict(fakes=(("a", folders["blurry"]), ("a", folders["tinted"]))), "names repeat"),
        (dict(fakes=()), "at least one --fake"),
        (dict(trials=0), "--trials=0"),
        (dict(exposure_ms=0), "--exposure_ms=0"),
        (dict(real=str(tmp_path / "missing")), "is not a directory"),
    ]
    for changes, message in cases:
        config = dict(real=folders["real"], fakes=(("blurry", folders["blurry"]),),
                      output_dir=str(tmp_path / "out"))
        config.update(changes)
        with pytest.raises(UserError, match=message):
            study.Study(study.StudyConfig(**config))
    broken = os.path.join(folders["blurry"], "001.png")
    with open(broken, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(UserError, match="001.png.*fix or remove it"):
        study.Study(_config(folders, tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out")
    with pytest.raises(UserError, match="use NAME=DIR"):
        study.parse_fake("nodir")


def _start(s, **options):
    server = study.make_server(s, "127.0.0.1", 0, **options)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read(), r.headers.get("Content-Type")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Content-Type")


def _post(url, body, raw=None):
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_the_api_serves_trials_saves_answers_and_survives_a_restart(tmp_path):
    folders = _scenes(tmp_path, n=3)
    out = tmp_path / "out"
    s = study.Study(_config(folders, out, practice=2, trials=4, exposure_ms=300))
    server, base = _start(s)
    try:
        status, page, kind = _get(base + "/")
        assert status == 200 and kind.startswith("text/html") and b"Which image is real?" in page
        status, body, _ = _get(base + "/api/status?participant=ann")
        assert json.loads(body) == {"participant": "ann", "next": 0, "total": 6, "practice": 2,
                                    "trials": 4, "exposure_ms": 300, "done": False}
        trials = s.sequence("ann")
        for i in range(3):
            status, body, _ = _get(f"{base}/api/trial?participant=ann&trial={i}")
            t = json.loads(body)
            assert t["phase"] == trials[i].phase and set(t) == {"trial", "phase", "left",
                                                               "right"}
            # The real image is on the real side, the method's on the other; nothing in the
            # URLs says which.
            for side in ("left", "right"):
                assert "real" not in t[side] and trials[i].method not in t[side]
                status, data, kind = _get(base + t[side])
                source = "real" if side == trials[i].real_side else trials[i].method
                name = [n for n in os.listdir(folders[source])
                        if n.startswith(trials[i].stem)][0]
                assert status == 200 and data == open(os.path.join(folders[source], name),
                                                      "rb").read()
                assert kind == ("image/jpeg" if name.endswith(".jpg") else "image/png")
            choice = trials[i].real_side if i != 1 else "left"
            status, reply = _post(base + "/api/answer", {"participant": "ann", "trial": i,
                                                         "choice": choice, "shown_ms": 301})
            assert status == 200 and reply["next"] == i + 1 and not reply["repeated"]
            assert ("correct" in reply) == (i < 2)  # feedback in practice only
        # A resent answer is not saved twice; the first one stands.
        status, reply = _post(base + "/api/answer", {"participant": "ann", "trial": 2,
                                                     "choice": "left"})
        assert status == 200 and reply["repeated"]
        saved = _lines(out / study.ANSWERS)
        assert [r["trial"] for r in saved] == [0, 1, 2]
        assert saved[0]["correct"] and saved[2]["fooled"] is False
        assert saved[1]["fooled"] == (trials[1].real_side == "right")

        before = open(out / study.ANSWERS, "rb").read()
        refusals = [
            (lambda: _get(base + "/api/status?participant=../etc"), 400, "participant id"),
            (lambda: _get(base + "/api/status"), 400, "participant id"),
            (lambda: _get(f"{base}/api/trial?participant=ann&trial=99"), 404,
             "trial 99 does not exist"),
            (lambda: _get(f"{base}/api/trial?participant=ann&trial=x"), 400, "whole number"),
            (lambda: _get(f"{base}/api/image?participant=ann&trial=0&side=up"), 400, "side"),
            (lambda: _get(base + "/images/../../etc/passwd"), 404, "no GET"),
            (lambda: _post(base + "/api/answer", {"participant": "ann", "trial": 5,
                                                  "choice": "left"}), 409,
             "answer trial 3 first"),
            (lambda: _post(base + "/api/answer", {"participant": "ann", "trial": 3,
                                                  "choice": "up"}), 400, "choice"),
            (lambda: _post(base + "/api/answer", {"participant": "ann", "trial": 3,
                                                  "choice": "left", "method": "blurry"}),
             400, "JSON object of participant, trial, choice and shown_ms"),
            (lambda: _post(base + "/api/answer", {"participant": "ann", "trial": 3,
                                                  "choice": "left", "shown_ms": -1}),
             400, "shown_ms"),
            (lambda: _post(base + "/api/answer", None, raw=b"{not json"), 400, "JSON"),
            (lambda: _post(base + "/api/answer", None, raw=b" " * 5000), 413, "over"),
        ]
        for call, code, message in refusals:
            status, body = call()[:2]
            body = body if isinstance(body, dict) else json.loads(body)
            assert status == code and message in body["error"], (code, body)
        assert open(out / study.ANSWERS, "rb").read() == before  # nothing written
        assert (out / study.STUDY_LOCK).exists()  # while it serves
    finally:
        server.shutdown()
        server.server_close()
        s.close()
    assert sorted(os.listdir(out)) == [study.ANSWERS, study.SETTINGS]

    # A crash in the middle of a write leaves a partial line: dropped on restart, and the
    # participant goes on at trial 3 with the same sequence.
    with open(out / study.ANSWERS, "a") as f:
        f.write('{"participant": "ann", "tri')
    again = study.Study(_config(folders, out, practice=2, trials=4, exposure_ms=300))
    assert again.position("ann") == 3 and again.sequence("ann") == trials
    assert again.record("ann", 3, "left", None)["next"] == 4
    assert [r["trial"] for r in _lines(out / study.ANSWERS)] == [0, 1, 2, 3]
    with pytest.raises(UserError, match="holds a study with other settings \\(trials differ"):
        study.Study(_config(folders, out, practice=2, trials=5, exposure_ms=300))


def test_the_report_of_a_hand_made_answer_file(tmp_path):
    records = []

    def add(who, method, fooled, phase="test"):
        records.append({"participant": who, "trial": len(records), "phase": phase,
                        "method": method, "stem": "x", "real_side": "left",
                        "choice": "right" if fooled else "left", "correct": not fooled,
                        "fooled": fooled, "shown_ms": 1000, "time": 0})

    for fooled in (True, False, False):
        add("p1", "A", fooled)
    for fooled in (True, True):
        add("p2", "A", fooled)
    add("p1", "A", True, phase="practice")  # practice trials are not counted
    add("p1", "B", False)
    with open(tmp_path / study.ANSWERS, "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in records))
        f.write('{"participant": "p3"')  # a crash's partial line
    rows = study.report(str(tmp_path))
    a, b = rows
    # p1 fooled 1/3, p2 2/2: mean 66.7 %, SE = std([1/3, 1], ddof 1) / sqrt(2) = 33.3 %.
    assert a["method"] == "A" and a["fooling_rate"] == pytest.approx(100 * 2 / 3)
    assert a["se"] == pytest.approx(100 / 3) and a["participants"] == 2 and a["trials"] == 5
    assert b == {"method": "B", "fooling_rate": 0.0, "se": None, "participants": 1, "trials": 1}
    markdown, text = study.report_text(rows)
    assert "| A | 66.7% | 33.3% | 2 | 5 |" in markdown and "| B | 0.0% | n/a | 1 | 1 |" in markdown
    assert text.splitlines()[0] == "method,fooling_rate,se,participants,trials"
    with pytest.raises(UserError, match="has no answers.jsonl"):
        study.report(str(tmp_path / "nothing"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / study.ANSWERS).write_text(json.dumps(records[0]) + "\n{oops\n")
    with pytest.raises(UserError, match="line 2 is not an answer record"):
        study.report(str(tmp_path / "bad"))


def _study_cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "tf_pix2pix.tools.study", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_the_command_line_serves_stops_and_reports(tmp_path):
    folders = _scenes(tmp_path, n=2)
    out = tmp_path / "out"
    proc = _study_cli("--real", folders["real"], "--fake", f"blurry={folders['blurry']}",
                      "--output_dir", str(out), "--port", "0", "--practice", "0",
                      "--trials", "1")
    try:
        line = proc.stdout.readline()
        assert "open http://127.0.0.1:" in line, proc.stderr.read() if proc.poll() else line
        base = line.split("open ")[1].split("/ ")[0]
        assert _get(base + "/")[0] == 200
        assert _post(base + "/api/answer", {"participant": "cli", "trial": 0,
                                            "choice": "left"})[0] == 200
    finally:
        proc.send_signal(signal.SIGTERM)  # as a process manager stops it; Ctrl-C is SIGINT,
        stdout, stderr = proc.communicate(timeout=60)  # the same handler
    assert proc.returncode == 0 and "Traceback" not in stderr
    assert "stopped; 1 answer(s)" in stdout
    report = subprocess.run([sys.executable, "-m", "tf_pix2pix.tools.study", "--report", str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert report.returncode == 0, report.stderr
    assert "| blurry |" in report.stdout and "method,fooling_rate" in report.stdout
    assert os.path.isfile(out / "report.md") and os.path.isfile(out / "report.csv")
    bad = subprocess.run([sys.executable, "-m", "tf_pix2pix.tools.study", "--real", folders["real"],
                          "--fake", f"x={tmp_path}"], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("error: --real")


# -- the page in a real browser ------------------------------------------------------------------

def _browser():
    return chromium_browser("1100,760")


def _wait(browser, predicate, timeout=15.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.005)
    raise AssertionError("the page did not get there in time: " +
                         browser.find_element("tag name", "body").get_attribute("data-state"))


def _participant(base, name, exposure_ms, stop_after=None, shots=None):
    """A scripted participant: enters ``name`` and answers every trial (alternating sides).
    Returns what was seen: per trial the page's measured exposure, the exposure measured here,
    and whether the images were hidden when the answer buttons came on."""
    from selenium.webdriver.common.by import By

    browser = _browser()
    seen = []
    try:
        browser.get(base + "/")
        browser.find_element(By.ID, "participant").send_keys(name)
        browser.find_element(By.ID, "start").click()
        state = lambda: browser.find_element(By.TAG_NAME, "body").get_attribute(  # noqa: E731
            "data-state")
        trial = 0
        # The state and the images' visibility read in one script call, in one turn of the
        # page's event loop: on a busy machine the exposure can end between two separate reads.
        showing = ("const s = document.body.dataset.state; return [s, ['left', 'right'].every("
                   "id => { const e = document.getElementById(id); return e.offsetParent !== "
                   "null && getComputedStyle(e).visibility === 'visible'; })];")
        while True:
            current, visible = _wait(browser, lambda: (lambda r: r if r[0] in (
                "showing", "done") else None)(browser.execute_script(showing)))
            if current == "done":
                break
            t0 = time.monotonic()
            progress = browser.find_element(By.ID, "progress").text
            images_visible = [visible]
            if shots is not None:
                kind = "practice" if "Practice" in progress else "test"
                if kind not in shots["taken"]:
                    browser.save_screenshot(os.path.join(shots["dir"], f"study_{kind}.png"))
                    shots["taken"].append(kind)
            _wait(browser, lambda: state() == "answering")
            t1 = time.monotonic()
            hidden = not any(browser.find_element(By.ID, s).is_displayed()
                             for s in ("left", "right"))
            exposure = browser.execute_script("return window.lastExposure")
            seen.append({"trial": trial, "progress": progress, "page_ms": exposure["shown_ms"],
                         "observed_ms": 1000 * (t1 - t0), "visible": all(images_visible),
                         "hidden_after": hidden})
            browser.find_element(By.ID, "choose-left" if trial % 2 == 0 else
                                 "choose-right").click()
            trial += 1
            if stop_after is not None and trial == stop_after:
                _wait(browser, lambda: state() in ("showing", "feedback", "loading"))
                return seen
            if "Practice" in progress:
                _wait(browser, lambda: browser.find_element(By.ID, "feedback").text)
                seen[-1]["feedback"] = browser.find_element(By.ID, "feedback").text
        seen.append({"end": browser.find_element(By.ID, "end-text").text})
        if shots is not None:
            browser.save_screenshot(os.path.join(shots["dir"], "study_end.png"))
        return seen
    finally:
        browser.quit()


def test_participants_complete_the_study_in_a_real_browser(tmp_path):
    _browser().quit()  # skips here, before any work, without chromium
    folders = _scenes(tmp_path, n=4, size=256)
    out = tmp_path / "out"
    exposure = 400
    config = _config(folders, out, practice=2, trials=4, exposure_ms=exposure)
    s = study.Study(config)
    server, base = _start(s)
    shots = {"dir": SCREENSHOTS or str(tmp_path), "taken": []}
    results = {}
    try:
        # Ann stops after three trials (closes the browser); the server restarts; she comes
        # back and finishes while Bob does the whole study at the same time.
        results["ann_first"] = _participant(base, "ann", exposure, stop_after=3)
        server.shutdown()
        server.server_close()
        s = study.Study(config)
        assert s.position("ann") == 3
        server, base = _start(s)
        threads = [threading.Thread(target=lambda n=n, kw=kw: results.__setitem__(
            n, _participant(base, n, exposure, **kw))) for n, kw in (("ann", {}),
                                                                     ("bob", {"shots": shots}))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=180)
    finally:
        server.shutdown()
        server.server_close()
    assert set(results) == {"ann_first", "ann", "bob"}, "a participant's browser failed"
    trials = results["ann_first"] + results["ann"][:-1] + results["bob"][:-1]
    assert len(results["ann"]) == 3 + 1 and len(results["bob"]) == 6 + 1
    for t in trials:
        assert t["visible"] and t["hidden_after"]
        # The page's own clock: at least the exposure, at most a few frames (and a busy CI
        # machine's timer slack) more; the test's clock (polling over WebDriver) around it.
        assert exposure <= t["page_ms"] <= exposure + 150, t
        assert exposure - 150 <= t["observed_ms"] <= exposure + 400, t
    assert [t["progress"] for t in results["bob"][:-1]] == [
        "Practice trial 1 of 2", "Practice trial 2 of 2", "Trial 1 of 4", "Trial 2 of 4",
        "Trial 3 of 4", "Trial 4 of 4"]
    assert results["ann"][0]["progress"] == "Trial 2 of 4"  # continued after the restart
    assert all(t["feedback"].startswith(("Correct", "Wrong")) for t in trials
               if t["progress"].startswith("Practice"))
    assert results["bob"][-1]["end"].startswith("All 6 trials are done")

    saved = _lines(out / study.ANSWERS)
    for who, choices in (("ann", ["left", "right", "left"] + ["left", "right", "left"]),
                         ("bob", ["left", "right"] * 3)):
        mine = [r for r in saved if r["participant"] == who]
        assert [r["trial"] for r in mine] == list(range(6))
        expected = s.sequence(who)
        assert [(r["method"], r["stem"], r["real_side"]) for r in mine] == [
            (t.method, t.stem, t.real_side) for t in expected]
        assert [r["choice"] for r in mine] == choices
        assert all(exposure <= r["shown_ms"] <= exposure + 150 for r in mine)
    rows = study.report(str(out))
    assert sum(r["trials"] for r in rows) == 8 and all(r["participants"] == 2 for r in rows)
    for name in ("study_practice.png", "study_test.png", "study_end.png"):
        with open(os.path.join(shots["dir"], name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_one_server_per_study_folder(tmp_path):
    """Issue 33, fault 6: two servers on one --output_dir both appended (16 answers for 8
    trials, a double-counting report)."""
    import socket

    from tf_pix2pix.runtime.locking import ModelDirLockedError, _process_start

    folders = _scenes(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / study.STUDY_LOCK).write_text(json.dumps({
            "host": socket.gethostname(), "pid": other.pid,
            "process_start": _process_start(other.pid), "started": "now"}))
        with pytest.raises(ModelDirLockedError, match=rf"{out} is in use by another study "
                                                      rf"server \(pid {other.pid}"):
            study.Study(_config(folders, out))
        assert not (out / study.SETTINGS).exists()  # refused before anything was written
    finally:
        other.kill()
        other.wait()
    s = study.Study(_config(folders, out))  # its holder is gone: taken over
    assert json.loads((out / study.STUDY_LOCK).read_text())["pid"] == os.getpid()
    s.close()
    assert not (out / study.STUDY_LOCK).exists()


def test_a_restart_with_the_methods_in_another_order_is_refused(tmp_path):
    """Issue 33, fault 8: the --fake order drives each participant's draw, but a restart with
    the flags reordered was accepted and the trial lists changed mid-study."""
    folders = _scenes(tmp_path)
    fakes = tuple((name, folders[name]) for name in ("blurry", "tinted"))
    first = study.Study(_config(folders, tmp_path / "out", fakes=fakes))
    sequence = first.sequence("p1")
    first.close()
    with pytest.raises(UserError, match=r"other settings \(fakes differ\)"):
        study.Study(_config(folders, tmp_path / "out", fakes=fakes[::-1]))
    again = study.Study(_config(folders, tmp_path / "out", fakes=fakes))
    assert again.sequence("p1") == sequence
    again.close()
    # A study.json written before the order was kept (fakes as a name -> folder object, in the
    # flags' order) restarts with that order and refuses the other.
    settings = json.loads((tmp_path / "out" / study.SETTINGS).read_text())
    settings["fakes"] = dict(settings["fakes"])
    (tmp_path / "out" / study.SETTINGS).write_text(json.dumps(settings))
    study.Study(_config(folders, tmp_path / "out", fakes=fakes)).close()
    with pytest.raises(UserError, match="fakes differ"):
        study.Study(_config(folders, tmp_path / "out", fakes=fakes[::-1]))


# -- faults: a full disk, malformed requests, settings a user can get wrong (issue 33) ----------

def test_a_failed_answer_write_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    """Issue 33, fault 7: a full disk while saving an answer left a partial line, the next answer
    was glued onto it, and the server then refused to start. Now the failed write is cut back
    (the page is told "not saved"), and a glued line of before is recovered."""
    import errno

    folders = _scenes(tmp_path, n=3)
    out = tmp_path / "out"
    s = study.Study(_config(folders, out, practice=0, trials=4))
    server, base = _start(s)
    real_write = os.write
    try:
        assert _post(base + "/api/answer", {"participant": "ann", "trial": 0,
                                            "choice": "left"})[0] == 200
        size = os.path.getsize(out / study.ANSWERS)

        def full_disk(fd, data):  # writes part of the line, then the disk is full
            real_write(fd, bytes(data[:10]))
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(study.os, "write", full_disk)
        status, reply = _post(base + "/api/answer", {"participant": "ann", "trial": 1,
                                                     "choice": "right"})
        assert status == 500 and reply["saved"] is False
        assert "No space left on device" in reply["error"]
        assert os.path.getsize(out / study.ANSWERS) == size  # as it was
        monkeypatch.setattr(study.os, "write", real_write)
        status, reply = _post(base + "/api/answer", {"participant": "ann", "trial": 1,
                                                     "choice": "right"})
        assert status == 200 and reply["repeated"] is False  # the page sends it again: saved
    finally:
        server.shutdown()
        server.server_close()
        s.close()
    assert [r["trial"] for r in _lines(out / study.ANSWERS)] == [0, 1]
    # A file of before: a line cut short by the full disk with the next, acknowledged answer
    # glued on. Every whole answer is recovered, at the server's start and in the report.
    first, second = (out / study.ANSWERS).read_text().splitlines()
    (out / study.ANSWERS).write_text(first + "\n" + second[:25] + second + "\n")
    again = study.Study(_config(folders, out, practice=0, trials=4))
    assert [r["trial"] for r in again.answers["ann"]] == [0, 1] and again.position("ann") == 2
    again.close()
    assert sum(r["trials"] for r in study.report(str(out))) == 2


def _raw(port, data, pause=None, read_timeout=20):
    """Sends ``data`` (then, after ``pause`` seconds, nothing more: a stalled client) and
    returns the status and the JSON body of the reply."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as sock:
        try:
            sock.sendall(data)
            if pause is None:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server already answered and closed (a refusal before the whole request)
        reply = b""
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except ConnectionResetError:
            pass
    head, _, body = reply.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/") else None
    return status, json.loads(body) if body else None


def _answer_request(body, headers=None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    fields = {"Content-Length": str(len(data))} if headers is None else headers
    lines = "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    return f"POST /api/answer HTTP/1.1\r\nHost: x\r\n{lines}\r\n".encode() + data


def test_malformed_requests_get_a_json_refusal_and_write_nothing(tmp_path):
    """Issue 33, fault 9: a negative Content-Length bypassed the body limit (a 5 MiB answer
    saved); values of the wrong type, non-finite numbers and deep nesting dropped the
    connection with a traceback; a stalled body held a thread forever."""
    folders = _scenes(tmp_path, n=2)
    out = tmp_path / "out"
    s = study.Study(_config(folders, out, practice=0, trials=2))
    server, _ = _start(s, timeout=1.0)
    port = server.server_address[1]
    good = {"participant": "ann", "trial": 0, "choice": "left"}
    post = lambda **change: _answer_request({**good, **change})  # noqa: E731
    cases = [
        (_answer_request(b"x" * 10, {"Content-Length": "-1"}), 400),
        (_answer_request(b"{}", {"Content-Length": "abc"}), 400),
        (_answer_request(b"{}", {"Content-Length": "2", "Transfer-Encoding": "chunked"}), 411),
        (_answer_request(b"{}", {}), 411),
        (_answer_request(b"{}", {"Content-Length": "5000000"}), 413),
        (_answer_request(b'{"a": 1}', {"Content-Length": "8", "content-length": "2"}), 400),
        (_answer_request(b"{}", {"Content-Length": "100"}), 400),  # the body ends early
        (_answer_request(b"not json"), 400),
        (_answer_request(b'{"participant": "ann", "trial": 0, "choice": "left", '
                         b'"shown_ms": NaN}'), 400),
        (_answer_request(b'{"participant": "ann", "trial": 0, "choice": "left", '
                         b'"shown_ms": Infinity}'), 400),
        (_answer_request(b"[" * 2000 + b"]" * 2000), 400),
        (_answer_request(b'{"participant": ' + b"{\"a\":" * 600 + b"1" + b"}" * 601), 400),
        (_answer_request([good]), 400),
        (post(extra=1), 400), (post(trial="0"), 400), (post(trial=True), 400),
        (post(trial=-1), 400), (post(trial=1.5), 400), (post(trial=10 ** 30), 404),
        (post(choice=1), 400), (post(choice=["left"]), 400), (post(choice="up"), 400),
        (post(participant=5), 400), (post(participant="../x"), 400),
        (post(participant=None), 400), (post(shown_ms="fast"), 400), (post(shown_ms=-1), 400),
        (post(shown_ms=1e300), 400), (post(shown_ms=True), 400), (post(trial=1), 409),
        (b"GET /api/trial?participant=ann&trial=abc HTTP/1.1\r\n\r\n", 400),
        (b"GET /api/trial?participant=ann&trial=-1 HTTP/1.1\r\n\r\n", 400),
        (b"GET /api/trial?participant=ann&trial=1e3 HTTP/1.1\r\n\r\n", 400),
        (b"GET /api/trial?participant=ann&trial=99999999999 HTTP/1.1\r\n\r\n", 400),
        (b"GET /api/trial?participant=%ff%fe&trial=0 HTTP/1.1\r\n\r\n", 400),
        (b"GET /api/image?participant=ann&trial=0&side=top HTTP/1.1\r\n\r\n", 400),
        (b"GET /api/status?" + b"&".join(b"f%d=1" % i for i in range(40)) + b" HTTP/1.1\r\n\r\n",
         400),
        (b"GET /nosuch HTTP/1.1\r\n\r\n", 404),
        (b"PUT /api/answer HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", 405),
        (b"DELETE /api/answer HTTP/1.1\r\n\r\n", 405),
        (b"GET /api/answer HTTP/1.1\r\n\r\n", 405),
        (b"BREW /pot HTTP/1.1\r\n\r\n", 501),
        (b"HELLO\r\n\r\n", 400),
        (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 120 + b"\r\n", 431),
    ]
    try:
        for request, expected in cases:
            status, body = _raw(port, request)
            assert (status, sorted(body or {})) == (expected, ["error"]), (request[:120], body)
        assert not (out / study.ANSWERS).exists()  # nothing was written
        # A body that stalls: a 408 after the read timeout, the thread freed.
        started = time.monotonic()
        status, body = _raw(port, _answer_request(b'{"parti', {"Content-Length": "50"}),
                            pause=True)
        assert status == 408 and "did not arrive" in body["error"]
        assert time.monotonic() - started < 10
        # More clients at once than the server holds: a 503 each, not a thread each (a server
        # of 3 connections on the same study; its stalled clients time out after 10 s).
        import socket

        small, _ = _start(s, timeout=10.0, max_connections=3)
        small_port = small.server_address[1]
        holders = [socket.create_connection(("127.0.0.1", small_port)) for _ in range(3)]
        for holder in holders:
            holder.sendall(b"GET /api/sta")  # a request line that never ends
        time.sleep(0.5)
        status, body = _raw(small_port, b"GET / HTTP/1.1\r\n\r\n")
        assert status == 503 and "busy" in body["error"]
        for holder in holders:
            holder.close()
        small.shutdown()
        small.server_close()
        status, reply = _raw(port, _answer_request(good))
        assert status == 200 and reply["saved"] is True  # the server still serves
        assert server.errors == 0  # and nothing went to its error log
    finally:
        server.shutdown()
        server.server_close()
        s.close()
    assert len(_lines(out / study.ANSWERS)) == 1


def test_fuzzed_requests_never_break_the_server(tmp_path_factory):
    """Property-based (Hypothesis, bounded): any answer body, any query, any Content-Length
    gets a JSON 200 or 4xx from a live server, never a 5xx or a logged error; only valid
    answers are written, each once."""
    from hypothesis import HealthCheck, given, settings, strategies as st

    root = tmp_path_factory.mktemp("fuzz")
    folders = _scenes(root, n=2)
    out = root / "out"
    s = study.Study(_config(folders, out, practice=1, trials=2))
    server, _ = _start(s, timeout=1.0)
    port = server.server_address[1]
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8)
        | st.sampled_from(["left", "right", "ann", "bob"]),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                    max_size=3), max_leaves=8)
    bodies = st.one_of(
        st.fixed_dictionaries({}, optional={"participant": json_values | st.sampled_from(
            ["ann", "bob"]), "trial": json_values | st.integers(0, 3), "choice": json_values,
            "shown_ms": json_values}).map(lambda d: json.dumps(d).encode()),
        json_values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=64))
    saved = []

    @settings(max_examples=150, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(body=bodies, length=st.one_of(st.none(), st.integers(-10 ** 7, 10 ** 7),
                                         st.text(max_size=6)),
           query=st.text(max_size=30), path=st.sampled_from(["/api/status", "/api/trial",
                                                            "/api/image", "/api/answer"]))
    def check(body, length, query, path):
        import urllib.parse as parse

        if length is None:
            request = _answer_request(body)
        else:
            text = str(length).replace("\r", "").replace("\n", "")
            request = _answer_request(body, {"Content-Length": text})
        status, reply = _raw(port, request, read_timeout=10)
        assert status is not None and (status == 200 or 400 <= status < 500), (status, reply)
        assert isinstance(reply, dict)
        if status == 200 and not reply["repeated"]:
            saved.append(reply)
        status, reply = _raw(port, f"GET {path}?{parse.quote(query, safe='=&')} "
                                   "HTTP/1.1\r\n\r\n".encode(), read_timeout=10)
        assert status == 200 or 400 <= status < 500, (status, reply)

    try:
        check()
        assert server.errors == 0
    finally:
        server.shutdown()
        server.server_close()
        s.close()
    lines = _lines(out / study.ANSWERS) if (out / study.ANSWERS).exists() else []
    assert len(lines) == len(saved)
    for participant in {r["participant"] for r in lines}:
        assert [r["trial"] for r in lines if r["participant"] == participant] == list(
            range(len([r for r in lines if r["participant"] == participant])))


def test_study_settings_and_folders_a_user_can_get_wrong(tmp_path):
    """Issue 33, part of fault 13: --port 99999, an --output_dir that is a file, a damaged or
    list-valued study.json (at the start and in --report), a report folder that cannot be
    written: each one line, never a traceback."""
    folders = _scenes(tmp_path, n=2)
    with pytest.raises(UserError, match="--port=99999: use 0"):
        _config(folders, tmp_path / "out", port=99999)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="--output_dir .*file is a file, not a folder"):
        study.Study(_config(folders, tmp_path / "file"))
    out = tmp_path / "out"
    study.Study(_config(folders, out)).close()
    for damage in ("{not json", "[1, 2]", '{"fakes": 3}'):
        (out / study.SETTINGS).write_text(damage)
        with pytest.raises(UserError, match=r"study.json is damaged .*new --output_dir"):
            study.Study(_config(folders, out))
        (out / study.ANSWERS).write_text("")
        with pytest.raises(UserError, match="study.json is damaged"):
            study.report(str(out))
    cli = [sys.executable, "-m", "tf_pix2pix.tools.study"]
    runs = [
        (["--real", folders["real"], "--fake", f"b={folders['blurry']}", "--port", "99999",
          "--output_dir", str(tmp_path / "o2")], "error: --port=99999"),
        (["--real", folders["real"], "--fake", f"b={folders['blurry']}",
          "--output_dir", str(tmp_path / "file")], "is a file, not a folder"),
        (["--report", str(out)], "study.json is damaged"),
    ]
    for args, message in runs:
        run = subprocess.run(cli + args, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
        assert run.stderr.strip().splitlines()[-1].startswith("error:")
        assert message in run.stderr
    # A folder where report.md cannot be written: the report is printed, a warning says so.
    os.remove(out / study.SETTINGS)
    (out / "report.md").mkdir()
    run = subprocess.run(cli + ["--report", str(out)], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0 and "method,fooling_rate" in run.stdout, run.stderr
    assert "warning: could not write" in run.stderr and "Traceback" not in run.stderr
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]
