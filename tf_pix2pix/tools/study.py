"""The pix2pix paper's perceptual study ("real vs fake", Isola et al. 2017, Sec. 4.2) as a local
web page, and its report.

Usage:
  python -m tf_pix2pix.tools.study --real results/real --fake pix2pix=results/p2p \\
      --fake L1=results/l1 --output_dir study --port 8080
  python -m tf_pix2pix.tools.study --report study

The paper's protocol (run on Amazon Mechanical Turk there): each trial shows a real image and a
generated image of the same input side by side, left/right at random, for one second
(``--exposure_ms``); then both are hidden until the participant says which one is real. The
first ``--practice`` (10) trials give feedback, the next ``--trials`` (40) do not. The result
of a method is its fooling rate: the percentage of test trials in which participants picked its
image as the real one, with the standard error over participants.

A folder is either a folder of images (real and generated images of one input share a file name
up to the extension) or an output folder of ``run_predict.py`` (its ``images/*_target.png`` are
the real photos, ``images/*_output.png`` the translations).

Here the server runs on the user's machine (bound to 127.0.0.1 unless ``--host`` says
otherwise). Each participant types an id of their choosing; their trials come from a random
generator seeded by the study's ``--seed`` and that id: the methods interleaved (each block of
as many trials as methods holds every method once, in random order), each method's images drawn
without replacement from the stems that the real folder and every fake folder share (then again
in a new order). Answers are appended to ``<output_dir>/answers.jsonl`` as they come, one JSON
line each, flushed and fsync'd before the page is told they were saved; the participant's
position is the number of their answers there, so a restarted server (same ``--output_dir``,
same settings: ``study.json`` refuses others) loses nothing and the participant continues where
they stopped. Requests name only the participant, a trial number and a side: image paths never
come from the browser.

``--report DIR`` prints, per method, the fooling rate (mean over participants of each
participant's rate), its standard error over participants, the number of participants and of
test trials, as a Markdown table and as CSV (also written to ``DIR/report.md`` and
``DIR/report.csv``). Practice trials are not counted.
"""

from __future__ import annotations

import csv
import dataclasses
import http.server
import io
import json
import math
import os
import random
import re
import signal
import statistics
import sys
import threading
import time
import urllib.parse
from typing import Any

from tf_pix2pix.cli import UserError, from_flags, writable_dir
from tf_pix2pix.configuration import option, option_of, write_atomic
from tf_pix2pix.runtime.locking import ModelDirLock

ANSWERS = "answers.jsonl"
SETTINGS = "study.json"
STUDY_LOCK = "study.lock"
PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "study_page.html")
PARTICIPANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
METHOD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")
SIDES = ("left", "right")
MAX_BODY = 4096
MAX_CONNECTIONS = 64  # served at once; more get a 503 (each holds a thread)
READ_TIMEOUT = 15.0  # seconds a request may leave the server waiting for its next bytes
MAX_SHOWN_MS = 86_400_000.0  # a day: longer is not a time an image was on the screen
# How every answer line starts (json.dumps of the record's first key): a line glued onto a line
# cut short by a full disk (before answers were written whole or not at all) is found by it.
_RECORD_START = b'{"participant": '
CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "bmp": "image/bmp",
                 "gif": "image/gif"}


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """One study: the folders, the protocol, where answers go and where the page is served
    (each field but the folders is a flag of ``python -m tf_pix2pix.tools.study``)."""

    real: str = option(dataclasses.MISSING, "Folder of the real images (or a run_predict.py "
                                            "output folder: its targets).")
    fakes: tuple[tuple[str, str], ...]  # (method name, folder): the --fake flags
    output_dir: str = option("study", "Where study.json and answers.jsonl go.")
    exposure_ms: int = option(1000, "How long both images are shown.")
    practice: int = option(10, "Practice trials (with feedback) per participant.")
    trials: int = option(40, "Test trials per participant.")
    seed: int = option(0, "Seed of every participant's trial order.")
    host: str = option("127.0.0.1", "Address to listen on (0.0.0.0: every network interface, "
                                    "for participants on other machines).")
    port: int = option(8080, "Port (0: any free one).")

    def __post_init__(self) -> None:
        if not self.fakes:
            raise UserError("pass at least one --fake NAME=DIR")
        names = [name for name, _ in self.fakes]
        for name in names:
            if not METHOD.fullmatch(name):
                raise UserError(f"--fake {name}=...: a method name is 1-64 letters, digits and "
                                "_ . + - (no path characters)")
        if len(set(names)) != len(names):
            raise UserError(f"--fake: method names repeat ({', '.join(names)})")
        if self.exposure_ms < 1:
            raise UserError(f"--exposure_ms={self.exposure_ms}: use a positive time")
        if not 0 <= self.port <= 65535:
            raise UserError(f"--port={self.port}: use 0 (any free port) to 65535")
        if self.practice < 0 or self.trials < 1:
            raise UserError(f"--practice={self.practice} --trials={self.trials}: use 0 or more "
                            "practice trials and 1 or more test trials")

    @property
    def total(self) -> int:
        return self.practice + self.trials


def parse_fake(text: str) -> tuple[str, str]:
    """``NAME=DIR`` of ``--fake``."""
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise UserError(f"--fake {text}: use NAME=DIR (e.g. --fake pix2pix=results/images)")
    return name, folder


@dataclasses.dataclass(frozen=True)
class Trial:
    index: int
    phase: str  # practice | test
    method: str
    stem: str
    real_side: str  # left | right


def _image_files(folder: str, flag: str, role: str) -> dict[str, str]:
    """``{stem: path}`` of the image files of ``folder``; in a ``run_predict.py`` output folder
    (``index.html`` and ``images/``) its targets (``role`` ``target``: the real photos) or its
    translations (``output``), named without the suffix."""
    from tf_pix2pix.image_io import list_files

    if not os.path.isdir(folder):
        raise UserError(f"{flag} {folder} is not a directory")
    suffix = ""
    if (os.path.isfile(os.path.join(folder, "index.html"))
            and os.path.isdir(os.path.join(folder, "images"))):
        folder, suffix = os.path.join(folder, "images"), f"_{role}"
    files: dict[str, str] = {}
    for name in list_files(folder):
        stem = os.path.splitext(name)[0]
        if suffix:
            if not stem.endswith(suffix):
                continue
            stem = stem[:-len(suffix)]
        if stem in files:
            raise UserError(f"{flag} {folder} has two images named {stem}.*; keep one")
        files[stem] = os.path.join(folder, name)
    return files


class Study:
    """The trials, the answers file and the participants' positions (thread-safe)."""

    def __init__(self, config: StudyConfig):
        from tf_pix2pix.image_io import BadImageError, read_image

        self.config = config
        self.methods = [name for name, _ in config.fakes]
        folders = {"real": _image_files(config.real, "--real", "target")}
        for name, folder in config.fakes:
            folders[name] = _image_files(folder, f"--fake {name}=", "output")
        common = set(folders["real"])
        for files in folders.values():
            common &= set(files)
        if not common:
            raise UserError(f"--real {config.real} and the --fake folders share no image name "
                            "(a real and a fake image of one input must have the same stem)")
        self.stems = sorted(common)
        # Every image a trial can show is checked (and its format kept) before anyone starts.
        self.files: dict[tuple[str, str], tuple[str, str]] = {}
        for source, files in folders.items():
            for stem in self.stems:
                try:
                    image = read_image(files[stem])
                except BadImageError as e:
                    raise UserError(f"{e}; fix or remove it from every folder") from None
                self.files[(source, stem)] = (files[stem], CONTENT_TYPES.get(image.format,
                                                                              "image/png"))
        self.lock = threading.Lock()
        writable_dir(config.output_dir, "--output_dir")
        self.path = os.path.join(config.output_dir, ANSWERS)
        self._sequences: dict[str, list[Trial]] = {}
        self.answers: dict[str, list[dict[str, Any]]] = {}
        # One server per study folder: two would both append (double counts, positions beyond
        # the trials). Same-host holders are told apart by process; another host's lock (a
        # shared file system) is refreshed by every request and stale after 10 minutes.
        self.folder_lock = ModelDirLock(config.output_dir, filename=STUDY_LOCK,
                                        holder="study server", flag="--output_dir").acquire()
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Releases the study folder (the server's end)."""
        self.folder_lock.release()

    def _settings(self) -> dict[str, Any]:
        c = self.config
        return {"real": os.path.abspath(c.real),
                # A list: the methods' order drives every participant's draw.
                "fakes": [[name, os.path.abspath(folder)] for name, folder in c.fakes],
                "exposure_ms": c.exposure_ms, "practice": c.practice, "trials": c.trials,
                "seed": c.seed, "stems": self.stems}

    def _open(self) -> None:
        """Creates ``output_dir`` or checks that it holds this study; reads the answers so far
        (dropping a last line cut short by a crash)."""
        os.makedirs(self.config.output_dir, exist_ok=True)
        settings_path = os.path.join(self.config.output_dir, SETTINGS)
        settings = self._settings()
        if os.path.exists(settings_path):
            saved = read_settings(self.config.output_dir)
            if saved != settings:
                changed = sorted(k for k in settings if saved.get(k) != settings[k])
                raise UserError(f"--output_dir {self.config.output_dir} holds a study with other "
                                f"settings ({', '.join(changed)} differ); its participants' "
                                "trials would change: use another --output_dir or the same "
                                "settings")
        else:
            write_atomic(settings_path, json.dumps(settings, indent=2), sync=True)
        if os.path.exists(self.path):
            records, end = read_answers(self.path)
            if end < os.path.getsize(self.path):  # a line cut short by a crash: dropped
                with open(self.path, "r+b") as f:
                    f.truncate(end)
            for record in records:
                self.answers.setdefault(record["participant"], []).append(record)

    def sequence(self, participant: str) -> list[Trial]:
        """The participant's trials (the same for every run of the server)."""
        if participant not in self._sequences:
            c = self.config
            rng = random.Random(f"{c.seed}:{participant}")
            pools = {m: [] for m in self.methods}
            trials, order = [], []
            for index in range(c.total):
                if not order:
                    order = rng.sample(self.methods, len(self.methods))
                method = order.pop()
                if not pools[method]:
                    pools[method] = rng.sample(self.stems, len(self.stems))
                trials.append(Trial(index, "practice" if index < c.practice else "test", method,
                                    pools[method].pop(), rng.choice(SIDES)))
            self._sequences[participant] = trials
        return self._sequences[participant]

    def position(self, participant: str) -> int:
        return len(self.answers.get(participant, []))

    def status(self, participant: str) -> dict[str, Any]:
        c = self.config
        with self.lock:
            self.folder_lock.heartbeat()
            done = self.position(participant)
        return {"participant": participant, "next": done, "total": c.total,
                "practice": c.practice, "trials": c.trials, "exposure_ms": c.exposure_ms,
                "done": done >= c.total}

    def trial(self, participant: str, index: int) -> Trial:
        if not 0 <= index < self.config.total:
            raise RequestError(404, f"trial {index} does not exist (0 to "
                                    f"{self.config.total - 1})")
        return self.sequence(participant)[index]

    def image(self, participant: str, index: int, side: str) -> tuple[str, str]:
        """The file (path, content type) shown on ``side`` of a trial."""
        if side not in SIDES:
            raise RequestError(400, f"side={side!r}: use left or right")
        t = self.trial(participant, index)
        return self.files[("real" if side == t.real_side else t.method, t.stem)]

    def _append(self, line: bytes) -> None:
        """Appends one answer line whole and on the disk, or not at all: a failed write (a full
        disk) is cut back to the answers before it, so the next answer starts its own line, and
        raises (the page is told the answer was not saved and may send it again)."""
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            size = os.fstat(fd).st_size  # the acknowledged answers (one server: study.lock)
            try:
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            except OSError:
                try:
                    os.ftruncate(fd, size)
                except OSError:
                    pass  # read_answers drops a cut line at the next start, finds a glued one
                raise
        finally:
            os.close(fd)

    def record(self, participant: str, index: int, choice: str,
               shown_ms: float | None) -> dict[str, Any]:
        """Saves the answer to trial ``index`` (the participant's next one) and returns what the
        page needs: feedback on practice trials, the next trial."""
        choice, shown_ms = _choice(choice), _shown_ms(shown_ms)
        t = self.trial(participant, index)
        with self.lock:
            self.folder_lock.heartbeat()
            done = self.position(participant)
            if index < done:  # a resent answer: the first one stands
                record, repeated = self.answers[participant][index], True
            elif index > done:
                raise RequestError(409, f"answer trial {done} first (trial {index} sent)")
            else:
                repeated = False
                record = {"participant": participant, "trial": index, "phase": t.phase,
                          "method": t.method, "stem": t.stem, "real_side": t.real_side,
                          "choice": choice, "correct": choice == t.real_side,
                          "fooled": choice != t.real_side, "shown_ms": shown_ms,
                          "time": round(time.time(), 3)}
                self._append((json.dumps(record) + "\n").encode())
                self.answers.setdefault(participant, []).append(record)
        reply = {"saved": True, "repeated": repeated, "next": index + 1,
                 "done": index + 1 >= self.config.total}
        if t.phase == "practice":
            reply["correct"] = record["correct"]
            reply["real_side"] = t.real_side
        return reply


def _answer_record(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(record, dict) or not {"participant", "phase", "method",
                                            "fooled"} <= set(record):
        return None
    return record


def read_answers(path: str) -> tuple[list[dict[str, Any]], int]:
    """The answer records of ``path`` and the byte length of its complete lines (a last line
    without its newline, cut short by a crash, is not counted).

    A line that is a cut-short answer with a whole answer glued on (a full disk under a server
    of before, which then saved and acknowledged the next answer) gives the whole one.

    Raises:
      UserError: a complete line that is not an answer record, by its number.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise UserError(f"{path}: cannot read it ({e.strerror})") from None
    end = data.rfind(b"\n") + 1
    records = []
    for number, line in enumerate(data[:end].split(b"\n")[:-1], 1):
        if not line.strip():
            continue
        record = _answer_record(line)
        start = line.rfind(_RECORD_START)
        if record is None and start > 0:
            record = _answer_record(line[start:])
        if record is None:
            raise UserError(f"{path} line {number} is not an answer record; remove or mend it")
        records.append(record)
    return records, end


def read_settings(output_dir: str) -> dict[str, Any]:
    """The settings in ``output_dir``'s ``study.json`` (methods as ``[name, folder]`` pairs, in
    the study's order; a file of before, which held them as an object, in its file order).

    Raises:
      UserError: the file cannot be read or is not a study's settings.
    """
    path = os.path.join(output_dir, SETTINGS)
    try:
        with open(path, "rb") as f:
            saved = json.loads(f.read())
    except OSError as e:
        raise UserError(f"{path}: cannot read it ({e.strerror})") from None
    except (ValueError, RecursionError):
        saved = None
    if isinstance(saved, dict) and isinstance(saved.get("fakes"), dict):
        saved["fakes"] = [list(item) for item in saved["fakes"].items()]
    if not (isinstance(saved, dict) and isinstance(saved.get("fakes"), list)
            and all(isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
                    for item in saved["fakes"])):
        raise UserError(f"{path} is damaged (not the settings of a study); restore it, or move "
                        "the folder away and start the study in a new --output_dir")
    return saved


class RequestError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _participant(value: Any) -> str:
    if not isinstance(value, str) or not PARTICIPANT.fullmatch(value):
        raise RequestError(400, "participant id: 1-64 letters, digits, _ and -, starting with a "
                                "letter or digit")
    return value


def _index(value: Any, query: bool = False) -> int:
    """A trial number: digits in a query string, a JSON integer in a body."""
    if query and isinstance(value, str) and re.fullmatch(r"[0-9]{1,9}", value):
        return int(value)
    if not query and isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise RequestError(400, "trial must be a whole number (0 or more)")


def _choice(value: Any) -> str:
    if not isinstance(value, str) or value not in SIDES:
        raise RequestError(400, "choice must be \"left\" or \"right\"")
    return value


def _shown_ms(value: Any) -> float | None:
    if value is None:
        return None
    if (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and 0 <= value <= MAX_SHOWN_MS):
        return value
    raise RequestError(400, f"shown_ms must be null or a number of milliseconds (0 to "
                            f"{MAX_SHOWN_MS:.0f})")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _answer_body(data: bytes) -> dict[str, Any]:
    """The JSON object of an answer (strict JSON: no NaN or Infinity; nesting is refused)."""
    try:
        body = json.loads(data, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise RequestError(400, "the body must be JSON") from None
    if not isinstance(body, dict) or set(body) - {"participant", "trial", "choice",
                                                  "shown_ms"}:
        raise RequestError(400, "the body must be a JSON object of participant, trial, choice "
                                "and shown_ms")
    return body


def make_handler(study: Study, timeout: float = READ_TIMEOUT
                 ) -> type[http.server.BaseHTTPRequestHandler]:
    """The request handler of ``study``: every request gets a JSON reply (4xx for a request it
    cannot take, nothing written then), reads are bounded in size and in time (``timeout``
    seconds per read: a stalled client gets a 408 and its thread back)."""
    with open(PAGE, "rb") as f:
        page = f.read()

    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "tf_pix2pix-study"

        def setup(self) -> None:
            self.timeout = timeout  # StreamRequestHandler sets it on the socket
            super().setup()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # one line per request would drown the console; errors are printed

        def send_error(self, code: int, message: str | None = None,
                       explain: str | None = None) -> None:
            """The standard library's refusals (a bad request line, headers too long, an
            unknown method) as JSON, like every other reply (with a status line also when
            the request line was too broken to say its HTTP version)."""
            if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
                self.request_version = "HTTP/1.0"
            self._json(code, {"error": message or http.HTTPStatus(code).phrase})

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                if status >= 400:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
            except (ConnectionError, TimeoutError):
                self.close_connection = True  # the client left: nothing to tell it

        def _json(self, status: int, value: dict[str, Any]) -> None:
            self._send(status, json.dumps(value).encode(), "application/json")

        def _body(self) -> bytes:
            """The request body, by its one decimal Content-Length (at most MAX_BODY)."""
            if self.headers.get("Transfer-Encoding") is not None:
                raise RequestError(411, "send the body with a Content-Length, not chunked")
            values = self.headers.get_all("Content-Length") or []
            if not values:
                raise RequestError(411, "a POST needs a Content-Length")
            if len(set(values)) > 1:
                raise RequestError(400, "Content-Length is given twice, differently")
            text = values[0].strip()
            if not re.fullmatch(r"[0-9]{1,9}", text):
                raise RequestError(400, f"Content-Length {text[:20]!r} is not a byte count")
            length = int(text)
            if length > MAX_BODY:
                raise RequestError(413, f"request body over {MAX_BODY} bytes")
            data = b""
            try:
                while len(data) < length:
                    chunk = self.rfile.read(length - len(data))
                    if not chunk:
                        raise RequestError(400, f"the body ended after {len(data)} of "
                                                f"{length} bytes")
                    data += chunk
            except TimeoutError:
                raise RequestError(408, f"the body did not arrive within {timeout:g} s") from None
            return data

        def _handle(self, method: str) -> None:
            url = urllib.parse.urlsplit(self.path)
            try:
                try:
                    query = dict(urllib.parse.parse_qsl(url.query, max_num_fields=16))
                except ValueError:
                    raise RequestError(400, "too many query fields (16 at most)") from None
                if method == "GET" and url.path in ("/", "/index.html"):
                    self._send(200, page, "text/html; charset=utf-8")
                elif method == "GET" and url.path == "/api/status":
                    self._json(200, study.status(_participant(query.get("participant"))))
                elif method == "GET" and url.path == "/api/trial":
                    p = _participant(query.get("participant"))
                    i = _index(query.get("trial"), query=True)
                    t = study.trial(p, i)
                    images = {side: "/api/image?" + urllib.parse.urlencode(
                        {"participant": p, "trial": i, "side": side}) for side in SIDES}
                    self._json(200, {"trial": i, "phase": t.phase, **images})
                elif method == "GET" and url.path == "/api/image":
                    path, content_type = study.image(_participant(query.get("participant")),
                                                     _index(query.get("trial"), query=True),
                                                     query.get("side", ""))
                    with open(path, "rb") as f:
                        self._send(200, f.read(), content_type)
                elif method == "POST" and url.path == "/api/answer":
                    body = _answer_body(self._body())
                    self._json(200, study.record(_participant(body.get("participant")),
                                                 _index(body.get("trial")), body.get("choice"),
                                                 body.get("shown_ms")))
                else:
                    known = url.path in ("/", "/index.html", "/api/status", "/api/trial",
                                         "/api/image", "/api/answer")
                    raise RequestError(405 if known or method != "GET" else 404,
                                       f"no {method} {url.path[:200]} here")
            except RequestError as e:
                self._json(e.status, {"error": str(e)})
            except OSError as e:  # the answers file or an image could not be written/read
                print(f"study: {method} {url.path}: {e}", file=sys.stderr, flush=True)
                self._json(500, {"saved": False,
                                 "error": f"the server could not read or save: {e.strerror}"})

        def do_GET(self) -> None:  # noqa: N802
            self._handle("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._handle("POST")

        def _refuse(self) -> None:
            self._json(405, {"error": f"{self.command} is not served here (GET and POST are)"})

        do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse  # noqa: N815

    return Handler


_BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
         b"Connection: close\r\nRetry-After: 1\r\n\r\n"
         b'{"error": "the study server is busy; try again in a moment"}')


class StudyServer(http.server.ThreadingHTTPServer):
    """A threaded server that holds at most ``MAX_CONNECTIONS`` requests at once (more get a
    503, not a thread each) and reports a request that failed in one line, counted in
    ``errors``, instead of a traceback."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type, max_connections: int):
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(max_connections)
        self.errors = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            try:
                request.sendall(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.errors += 1
        error = sys.exc_info()[1]
        print(f"study: a request from {client_address[0]} failed: {type(error).__name__}: "
              f"{error}", file=sys.stderr, flush=True)


def make_server(study: Study, host: str, port: int, timeout: float = READ_TIMEOUT,
                max_connections: int = MAX_CONNECTIONS) -> StudyServer:
    """A threaded HTTP server of ``study`` (port 0: a free one, see ``server_address``)."""
    try:
        return StudyServer((host, port), make_handler(study, timeout), max_connections)
    except (OSError, OverflowError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise UserError(f"--host {host} --port {port}: cannot listen there ({reason}); "
                        "pick another --port") from None


# -- the report --------------------------------------------------------------------------------

def report(output_dir: str) -> list[dict[str, Any]]:
    """Per method (in the study's order): ``fooling_rate`` and ``se`` in percent (None for one
    participant), ``participants`` and ``trials`` (test trials only)."""
    path = os.path.join(output_dir, ANSWERS)
    if not os.path.isfile(path):
        raise UserError(f"--report {output_dir} has no {ANSWERS}; pass a study's --output_dir")
    methods: list[str] = []
    settings = os.path.join(output_dir, SETTINGS)
    if os.path.isfile(settings):
        methods = [name for name, _ in read_settings(output_dir)["fakes"]]
    counts: dict[str, dict[str, list[int]]] = {}
    for r in read_answers(path)[0]:
        if r["phase"] != "test":
            continue
        method = str(r["method"])
        if method not in methods:
            methods.append(method)
        tally = counts.setdefault(method, {}).setdefault(str(r["participant"]), [0, 0])
        tally[0] += bool(r["fooled"])
        tally[1] += 1
    rows = []
    for method in methods:
        per = counts.get(method, {})
        rates = [fooled / n for fooled, n in per.values()]
        mean = statistics.fmean(rates) if rates else None
        se = statistics.stdev(rates) / math.sqrt(len(rates)) if len(rates) > 1 else None
        rows.append({"method": method,
                     "fooling_rate": None if mean is None else 100 * mean,
                     "se": None if se is None else 100 * se,
                     "participants": len(rates), "trials": sum(n for _, n in per.values())})
    return rows


def report_text(rows: list[dict[str, Any]]) -> tuple[str, str]:
    """The rows as the paper's table (Markdown) and as CSV."""
    fmt = lambda v: "n/a" if v is None else f"{v:.1f}%"  # noqa: E731
    lines = ["| method | % of test trials the fake was picked as real | ± SE (participants) | "
             "participants | trials |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {fmt(r['fooling_rate'])} | {fmt(r['se'])} | "
                     f"{r['participants']} | {r['trials']} |")
    out = io.StringIO()
    writer = csv.DictWriter(out, ["method", "fooling_rate", "se", "participants", "trials"],
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return "\n".join(lines) + "\n", out.getvalue()


# -- the command line ----------------------------------------------------------------------------

def _define_flags() -> None:
    from absl import flags

    from tf_pix2pix.cli import define_flags

    flags.DEFINE_string("real", None, option_of(StudyConfig, "real").metadata["help"])
    flags.DEFINE_multi_string("fake", [], "NAME=DIR: a method's generated images, named as the "
                                          "real ones (or a run_predict.py output folder: its "
                                          "outputs); repeat for several methods.")
    define_flags(StudyConfig, exclude=("real", "fakes"))
    flags.DEFINE_string("report", None, "Print the fooling rates of the study in this folder "
                                        "and exit.")


def main(argv: list[str]) -> None:
    from absl import flags

    f = flags.FLAGS
    if f.report:
        markdown, text = report_text(report(f.report))
        print(markdown)
        print(text, end="", flush=True)
        for name, content in (("report.md", markdown), ("report.csv", text)):
            try:
                write_atomic(os.path.join(f.report, name), content)
            except OSError as e:  # the table is printed above: the report is not lost
                print(f"warning: could not write {os.path.join(f.report, name)} "
                      f"({e.strerror}); the report is printed above", file=sys.stderr)
        return
    if not f.real:
        raise UserError("pass --real DIR and --fake NAME=DIR (or --report DIR)")
    config = from_flags(StudyConfig, real=f.real,
                        fakes=tuple(parse_fake(x) for x in f.fake))
    study = Study(config)
    try:
        server = make_server(study, config.host, config.port)
    except BaseException:
        study.close()
        raise
    host, port = server.server_address[:2]
    print(f"Perceptual study of {len(study.stems)} image(s) x {len(study.methods)} method(s) "
          f"({', '.join(study.methods)}): open http://{host}:{port}/ — answers go to "
          f"{study.path}; Ctrl-C (or SIGTERM) stops the server (nothing saved is lost).",
          flush=True)
    # Both stop it cleanly, also where the server was started with SIGINT ignored (a
    # background job of a non-interactive shell inherits SIG_IGN, which Python keeps).
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.default_int_handler)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        study.close()
    print(f"stopped; {sum(len(a) for a in study.answers.values())} answer(s) in {study.path}")


def run() -> None:
    from tf_pix2pix.cli import run_main

    _define_flags()
    run_main(main)


if __name__ == "__main__":
    run()
