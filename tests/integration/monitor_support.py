"""Helpers of the dashboard browser test: headless Chromium, real service processes, a tiny DOM and PNG reader.

Standard library only: the DOM comes from `chromium --dump-dom` (parsed with html.parser) and the screenshot
is decoded with zlib, so the test needs nothing beyond the repository's pinned requirements and Debian's chromium.
"""

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request
import zlib
from html.parser import HTMLParser

import pytest

# Headless flags: no sandbox (containers run as root), no GPU, and nothing that phones home.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
CHROMIUM_TIMEOUT_S = 120
APT_TIMEOUT_S = 900


# ------------------------------------------------------------------------------------------------ Chromium

def _apt(args, env):
    cmd = ["apt-get"] + args
    if os.geteuid() != 0 and shutil.which("sudo"):
        cmd = ["sudo", "-n", "--preserve-env=DEBIAN_FRONTEND"] + cmd
    try:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(cmd, 1, "", str(exc))


def ensure_chromium():
    """Path of Debian's chromium; installed with apt-get when missing. Fails (never skips) when that is impossible."""
    path = shutil.which("chromium")
    if path:
        return path
    if not shutil.which("apt-get"):
        pytest.fail("chromium is not installed and apt-get is not available to install it: install Debian's chromium package.",
                    pytrace=False)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    proc = _apt(["install", "-y", "chromium"], env)
    if proc.returncode != 0:
        # A fresh container has no package lists yet.
        _apt(["update"], env)
        proc = _apt(["install", "-y", "chromium"], env)
    path = shutil.which("chromium")
    if proc.returncode != 0 or not path:
        pytest.fail("chromium is not installed and `apt-get install -y chromium` failed (exit %s): %s"
                    % (proc.returncode, (proc.stderr or proc.stdout or "")[-1500:].strip()), pytrace=False)
    return path


def run_chromium(chromium, url, user_data_dir, extra_args, timeout=CHROMIUM_TIMEOUT_S):
    """Run headless chromium once against url; returns the CompletedProcess (stdout as text)."""
    cmd = [chromium] + CHROMIUM_FLAGS + ["--user-data-dir=%s" % user_data_dir] + list(extra_args) + [url]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                              env=dict(os.environ, HOME=str(user_data_dir)))
    except subprocess.TimeoutExpired:
        pytest.fail("chromium did not finish within %d s: %s" % (timeout, " ".join(cmd)), pytrace=False)
    return None


def dump_dom(chromium, url, user_data_dir, budget_ms=10000):
    """The DOM after the page's scripts ran for budget_ms of virtual time."""
    proc = run_chromium(chromium, url, user_data_dir, ["--virtual-time-budget=%d" % budget_ms, "--dump-dom"])
    if proc.returncode != 0 or "<html" not in proc.stdout:
        raise AssertionError("chromium --dump-dom failed (exit %s): %s" % (proc.returncode, proc.stderr[-2000:]))
    return proc.stdout


def screenshot(chromium, url, user_data_dir, path, size=(1366, 900), budget_ms=10000):
    proc = run_chromium(chromium, url, user_data_dir, ["--virtual-time-budget=%d" % budget_ms, "--screenshot=%s" % path,
                                                       "--window-size=%d,%d" % size])
    if proc.returncode != 0 or not os.path.exists(path):
        raise AssertionError("chromium --screenshot failed (exit %s): %s" % (proc.returncode, proc.stderr[-2000:]))
    return path


# ------------------------------------------------------------------------------------------------ DOM

VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Element:
    def __init__(self, tag, attrs, parent=None):
        self.tag = tag
        self.attrs = {name: ("" if value is None else value) for name, value in attrs}
        self.parent = parent
        self.children = []

    @property
    def classes(self):
        return self.attrs.get("class", "").split()

    def text(self):
        return "".join(child if isinstance(child, str) else child.text() for child in self.children)

    def iter(self):
        yield self
        for child in self.children:
            if isinstance(child, Element):
                yield from child.iter()

    def find_all(self, tag=None, cls=None, **attrs):
        """Descendants (and self) by tag, one class and exact attribute values (data_event= means data-event=)."""
        wanted = {name.replace("_", "-"): value for name, value in attrs.items()}
        found = []
        for node in self.iter():
            if tag and node.tag != tag:
                continue
            if cls and cls not in node.classes:
                continue
            if all(node.attrs.get(name) == value for name, value in wanted.items()):
                found.append(node)
        return found

    def find(self, tag=None, cls=None, **attrs):
        found = self.find_all(tag, cls, **attrs)
        return found[0] if found else None

    def style(self):
        """The inline style attribute as a dict."""
        rules = {}
        for rule in self.attrs.get("style", "").split(";"):
            if ":" in rule:
                name, value = rule.split(":", 1)
                rules[name.strip()] = value.strip()
        return rules

    def __repr__(self):
        return "<%s %s>" % (self.tag, " ".join('%s="%s"' % item for item in self.attrs.items()))


class _DomBuilder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", [])
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Element(tag, attrs, self.stack[-1])
        self.stack[-1].children.append(node)
        if tag not in VOID_TAGS:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(Element(tag, attrs, self.stack[-1]))

    def handle_endtag(self, tag):
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def parse_dom(html):
    builder = _DomBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


# ------------------------------------------------------------------------------------------------ PNG

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _unfilter(raw, width, height, bpp):
    """PNG scanline filters undone (RFC 2083 section 6): one bytes object per row."""
    stride = width * bpp
    low = int.from_bytes(b"\x7f" * stride, "big")
    high = int.from_bytes(b"\x80" * stride, "big")
    prev = bytearray(stride)
    rows = []
    for y in range(height):
        start = y * (stride + 1)
        kind = raw[start]
        line = bytearray(raw[start + 1:start + 1 + stride])
        if kind == 1:  # Sub
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif kind == 2:  # Up: a byte-wise add without carries, on whole rows at once
            cur, up = int.from_bytes(line, "big"), int.from_bytes(prev, "big")
            line = bytearray((((cur & low) + (up & low)) ^ ((cur ^ up) & high)).to_bytes(stride, "big"))
        elif kind == 3:  # Average
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif kind == 4:  # Paeth
            for i in range(stride):
                left, corner = (line[i - bpp], prev[i - bpp]) if i >= bpp else (0, 0)
                above = prev[i]
                guess = left + above - corner
                dist_left, dist_above, dist_corner = abs(guess - left), abs(guess - above), abs(guess - corner)
                if dist_left <= dist_above and dist_left <= dist_corner:
                    pred = left
                elif dist_above <= dist_corner:
                    pred = above
                else:
                    pred = corner
                line[i] = (line[i] + pred) & 0xFF
        elif kind != 0:
            raise AssertionError("row %d has the unknown PNG filter type %d" % (y, kind))
        rows.append(bytes(line))
        prev = line
    return rows


class Png:
    """An 8-bit RGB / RGBA, non-interlaced PNG (what Chromium writes), decoded with zlib."""

    def __init__(self, path):
        with open(path, "rb") as handle:
            data = handle.read()
        if data[:8] != PNG_SIGNATURE:
            raise AssertionError("%s is not a PNG file (signature %r)" % (path, data[:8]))
        pos, header, idat = 8, None, []
        while pos + 8 <= len(data):
            length, kind = struct.unpack(">I4s", data[pos:pos + 8])
            body = data[pos + 8:pos + 8 + length]
            (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
            if zlib.crc32(kind + body) != crc:
                raise AssertionError("%s: the CRC of chunk %r is wrong" % (path, kind))
            if kind == b"IHDR":
                header = struct.unpack(">IIBBBBB", body)
            elif kind == b"IDAT":
                idat.append(body)
            elif kind == b"IEND":
                break
            pos += 12 + length
        if header is None or not idat:
            raise AssertionError("%s has no IHDR or IDAT chunk" % path)
        self.width, self.height, depth, colour_type, _compression, _filter, interlace = header
        if depth != 8 or colour_type not in (2, 6) or interlace:
            raise AssertionError("%s: unexpected PNG format (depth %d, colour type %d, interlace %d)" % (path, depth, colour_type, interlace))
        self.bpp = 3 if colour_type == 2 else 4
        raw = zlib.decompress(b"".join(idat))
        if len(raw) != self.height * (self.width * self.bpp + 1):
            raise AssertionError("%s: %d bytes of image data for %dx%d pixels" % (path, len(raw), self.width, self.height))
        self.rows = _unfilter(raw, self.width, self.height, self.bpp)

    def pixel(self, x, y):
        return tuple(self.rows[y][x * self.bpp:x * self.bpp + 3])

    def colours(self, box=None, step=2):
        """Distinct RGB colours in box (left, top, right, bottom), sampling every step-th pixel."""
        left, top, right, bottom = box or (0, 0, self.width, self.height)
        found = set()
        for y in range(top, bottom, step):
            row = self.rows[y]
            for x in range(left, right, step):
                found.add(row[x * self.bpp:x * self.bpp + 3])
        return found


# ------------------------------------------------------------------------------------------------ processes

def port_is_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the servers do: connections of a previous run in TIME_WAIT do not make the port busy.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class ServiceProcess:
    """A real server process with its output in a log file; stop() ends it (SIGTERM, then SIGKILL)."""

    def __init__(self, name, cmd, log_path, cwd=None, env=None):
        self.name = name
        self.cmd = cmd
        self.log_path = str(log_path)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,  # pylint: disable=consider-using-with
                                         start_new_session=True)

    def log_tail(self, size=3000):
        with open(self.log_path, "rb") as handle:
            return handle.read()[-size:].decode("utf-8", "replace")

    def wait_http(self, url, timeout=45.0):
        """Wait until url answers 200; fail with the process log when it exits or never answers."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("%s exited with status %s before answering %s:\n%s" % (self.name, self.proc.returncode, url, self.log_tail()))
            try:
                with urllib.request.urlopen(url, timeout=3) as response:
                    if response.status == 200:
                        return
                    last = "HTTP %d" % response.status
            except urllib.error.HTTPError as exc:
                last = "HTTP %d" % exc.code
            except (OSError, ValueError) as exc:
                last = str(exc)
            time.sleep(0.2)
        raise AssertionError("%s did not answer %s within %.0f s (%s):\n%s" % (self.name, url, timeout, last, self.log_tail()))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def http_json(method, url, body=None, token=None, timeout=60):
    """(status, decoded JSON body) of one request; HTTP errors are returned, not raised."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    headers = {"Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = "Bearer " + token
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        payload = exc.read()
        try:
            return exc.code, json.loads(payload)
        except ValueError:
            return exc.code, payload.decode("utf-8", "replace")
