"""What the served app exposes: loopback only, bounded uploads, no files outside its own folders,
no URL fetching for clients, no pickles, and no writes near the shipped weights.

One server (``app.py`` as a subprocess, 1 MB upload limit) is probed over raw HTTP. Paths go out
through ``http.client`` as written: httpx would normalise ``../`` segments away before sending.
"""

from __future__ import annotations

import ast
import http.client
import json
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parents[1]
UPLOAD_LIMIT_MB = 1


LOGS: dict[str, Path] = {}  # server URL -> its log (stdout and stderr)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, app_helpers: ModuleType) -> Iterator[str]:
    h = app_helpers
    log = tmp_path_factory.mktemp("security_server") / "app.log"
    proc, url, _ = h.start_server(h.checkpoint_dir(), None, log, extra_args=["--max-upload-mb", str(UPLOAD_LIMIT_MB)])
    LOGS[url] = log
    try:
        yield url
    finally:
        h.stop_server(proc)


def _get(url: str, path: str) -> tuple[int, bytes]:
    """GET ``path`` exactly as written (no normalisation of dot segments or escapes)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _served_files(url: str) -> list[str]:
    """The file URLs the page itself uses (the synthetic examples in the app's temp folder)."""
    import httpx

    config = json.dumps(httpx.get(f"{url}config", timeout=30).json())
    return [u for u in set(re.findall(r'"url":\s*"([^"]+)"', config)) if "/gradio_api/file=" in u]


def test_listens_on_loopback_only(server: str, app_module: ModuleType) -> None:
    assert app_module.build_parser().parse_args([]).host == "127.0.0.1"
    port = urlsplit(server).port
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outbound interface
        address = probe.getsockname()[0]
    except OSError:
        pytest.skip("no non-loopback interface to probe")
    finally:
        probe.close()
    if address.startswith("127."):
        pytest.skip("no non-loopback interface to probe")
    with pytest.raises(OSError), socket.create_connection((address, port), timeout=5):
        pass


def test_own_files_are_served_and_nothing_else(server: str) -> None:
    own = _served_files(server)
    assert own, "the page should reference its synthetic examples"
    example = urlsplit(own[0]).path
    status, body = _get(server, example)
    assert status == 200 and len(body) > 1000  # positive control: the app's own temp folder is served
    temp_file = example.split("file=", 1)[1]
    secret = REPO / "checkpoints" / "pose_aae.safetensors"
    targets = ["/etc/passwd", "../../../../../../etc/passwd", "..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd",
               f"{temp_file}/../../../../../etc/passwd", f"{Path(temp_file).parent}/../../../../app.py", "~/.bashrc",
               "app.py", "checkpoints/pose_aae.safetensors", str(secret), str(REPO / "app.py"), "/proc/self/environ"]  # fmt: skip
    routes = ["/gradio_api/file=", "/gradio_api/file/", "/file=", "/static/", "/assets/", "/gradio_api/static/"]
    for route in routes:
        for target in targets:
            status, body = _get(server, route + target)
            assert status in (400, 403, 404), (route + target, status)
            assert len(body) < 2000 and b"root:" not in body  # an error message, not a file


def test_no_url_fetching_for_clients(server: str) -> None:
    port = urlsplit(server).port
    for target in (f"http://127.0.0.1:{port}/config", "https://example.com/photo.png", "HTTP://example.com/a.png",
                   "ftp://example.com/a"):  # fmt: skip
        for route in ("/gradio_api/file=", "/gradio_api/file/"):
            status, _ = _get(server, route + target)
            assert status == 403, (route + target, status)


def test_upload_size_is_limited(server: str) -> None:
    import httpx

    big = httpx.post(f"{server}gradio_api/upload", files={"files": ("big.png", os.urandom(2 * 1024 * 1024), "image/png")},
                     timeout=60)  # fmt: skip
    assert big.status_code == 413
    small = httpx.post(f"{server}gradio_api/upload", files={"files": ("small.png", os.urandom(10_000), "image/png")}, timeout=60)
    assert small.status_code == 200
    # What was uploaded is served back from the app's own temp folder (and nothing next to it).
    path = small.json()[0]
    assert _get(server, f"/gradio_api/file={path}")[0] == 200
    assert _get(server, f"/gradio_api/file={path}/../../../../app.py")[0] in (403, 404)


def test_uploaded_pages_are_served_as_downloads_only(server: str) -> None:
    import httpx

    page = b"<html><script>alert(document.cookie)</script></html>"
    for name, mime in (("page.html", "text/html"), ("pic.svg", "image/svg+xml")):
        up = httpx.post(f"{server}gradio_api/upload", files={"files": (name, page, mime)}, timeout=60)
        assert up.status_code == 200
        got = httpx.get(f"{server}gradio_api/file={up.json()[0]}", timeout=60)
        assert got.status_code == 200
        assert got.headers["content-type"] == "application/octet-stream", got.headers
        assert got.headers["content-disposition"].startswith("attachment"), got.headers
        assert got.headers["x-content-type-options"] == "nosniff"
    home = httpx.get(server, timeout=60)
    assert home.headers["x-content-type-options"] == "nosniff" and home.headers["x-frame-options"] == "SAMEORIGIN"


def test_no_extra_routes(server: str) -> None:
    for path in ("/gradio_api/runs", "/monitoring", "/gradio_api/mcp/sse"):
        assert _get(server, path)[0] in (403, 404), path


def test_loads_no_pickles() -> None:
    """No code path of the app or the package can unpickle: weights are safetensors, arrays npz without pickles."""
    files = [REPO / "app.py", *sorted((REPO / "nlrd").rglob("*.py"))]
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
                assert not any(n.split(".")[0] in ("pickle", "cPickle", "dill", "joblib", "cloudpickle") for n in names), path
            if isinstance(node, ast.Call):
                fn = ast.unparse(node.func)
                assert fn not in ("torch.load", "pickle.load", "pickle.loads", "torch.jit.load"), (path, fn)
                for kw in node.keywords:
                    if kw.arg in ("allow_pickle", "weights_only"):
                        assert isinstance(kw.value, ast.Constant) and kw.value.value is (kw.arg == "weights_only"), (path, fn)


def test_runs_dir_inside_the_checkpoints_is_refused(app_module: ModuleType) -> None:
    with pytest.raises(SystemExit):  # argparse's error exit, before anything is loaded or served
        app_module.main(["--runs-dir", str(REPO / "checkpoints" / "mine")])


@pytest.fixture(scope="module")
def app_module(app_helpers: ModuleType) -> ModuleType:
    return app_helpers.load_app_module()


def test_importing_the_app_turns_gradio_telemetry_and_version_check_off() -> None:
    """Gradio phones home (telemetry and a version check at every start) unless told not to before it is
    imported; the app promises that nothing leaves the machine."""
    import subprocess
    import sys

    code = ("import os; os.environ.pop('GRADIO_ANALYTICS_ENABLED', None); import app; "
            "from gradio import analytics; print(analytics.analytics_enabled())")  # fmt: skip
    env = {k: v for k, v in __import__("os").environ.items() if k != "GRADIO_ANALYTICS_ENABLED"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parents[1]))  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"


# ----------------------------------------------------------------------------- refused requests say why
def _call(url: str, name: str, data: list) -> tuple[int, str, object]:
    """POST ``data`` to ``/gradio_api/call/<name>`` (NaN allowed, as JSON from other languages can carry it) and
    read the event stream: (POST status, last event, its data)."""
    import httpx

    body = json.dumps({"data": data}, allow_nan=True)
    r = httpx.post(f"{url}gradio_api/call/{name}", content=body, headers={"content-type": "application/json"}, timeout=60)
    if r.status_code != 200:
        return r.status_code, "", r.json()
    event, payload = "", None
    with httpx.stream("GET", f"{url}gradio_api/call/{name}/{r.json()['event_id']}", timeout=120) as stream:
        for line in stream.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                payload = json.loads(line.removeprefix("data: "))
    return r.status_code, event, payload


BAD_REQUESTS = [
    pytest.param("relation_pair", ["pose-flip", "abc"], "seed: 'abc' is not a valid number", id="text-for-a-number"),
    pytest.param("relation_pair", ["pose-flip", float("nan")], "seed: nan is not a valid number", id="nan-seed"),
    pytest.param("relation_pair", ["pose-flip"], r"expects 2 values \(Relation, seed\), got 1", id="missing-argument"),
    pytest.param("decode_latent", ["a"] * 32, "'a' is not a valid number", id="text-latents"),
    pytest.param("relation_pair", ["x" * 1_000_000, 1], r"x{40}\.\.\. \(1,000,000 characters\) is not in the list of choices",
                 id="megabyte-choice"),
    pytest.param("predict_image", [{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}, False, "fit"],
                 "not uploaded to this app", id="server-path-as-upload"),
    pytest.param("predict_image", [None, False, "Pose prior fitted to the keypoints"], "Add a photo first",
                 id="refused-by-the-handler"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "data", "message"), BAD_REQUESTS)
def test_refused_requests_say_why_in_one_log_line(server: str, name: str, data: list, message: str) -> None:
    log = LOGS[server]
    before = log.read_text()
    status, event, payload = _call(server, name, data)
    assert status == 200 and event == "error" and isinstance(payload, dict), (status, event, payload)
    text = payload["error"]
    assert isinstance(text, str) and re.search(message, text) and len(text) < 1000, text
    added = log.read_text()[len(before) :]
    assert "Traceback" not in added and len(re.findall(rf"refused /?{name}:", added)) == 1 and len(added) < 2000, added


def test_unknown_api_name_is_a_404_with_the_names(server: str) -> None:
    status, _, payload = _call(server, "teleport", [1])
    assert status == 404 and "unknown API name 'teleport'" in payload["error"] and "/relation_pair" in payload["error"]
