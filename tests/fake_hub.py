"""A local fake of the Hugging Face Hub's HTTP API, enough for ``HfApi.create_repo`` and ``create_commit``:
``huggingface_hub`` itself talks to it (pointed at it by ``HF_ENDPOINT``), so a test sees what really went
over HTTP. Every file is answered as a regular git blob at preupload: the LFS/Xet upload of large weights
(the real hub's path for ``*.safetensors``) is not faked."""

from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "hf_fake_write_token"
TELEMETRY = "/api/agent-harnesses"


class FakeHub:
    """``fail``: an HTTP status every request is answered with (401, 403, 404, 500), or only those whose path
    holds ``fail_on``; ``drop``: every connection is closed without an answer. ``requests`` lists (method, path)
    of each request; ``repos`` holds each created repository's settings and ``files`` each committed file's
    bytes by repository."""

    def __init__(self, fail: int | None = None, fail_on: str = "", drop: bool = False):
        self.fail, self.fail_on, self.drop = fail, fail_on, drop
        self.requests: list[tuple[str, str]] = []
        self.repos: dict[str, dict] = {}
        self.files: dict[str, dict[str, bytes]] = {}
        self.commits: dict[str, list[str]] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def paths(self) -> list[str]:
        """The paths requested for the caller, without huggingface_hub's own once-a-day fetch of its agent
        registry (``/api/agent-harnesses``, answered 404 here: it gives up quietly)."""
        return [path.split("?")[0] for _, path in self.requests if not path.startswith(TELEMETRY)]

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------------------------------------- endpoints
    def answer(self, method: str, path: str, headers, body: bytes) -> tuple[int, dict]:
        if self.fail and self.fail_on in path:
            return self.fail, {"error": f"fake hub: answering {self.fail}"}
        if headers.get("Authorization") != f"Bearer {TOKEN}":
            return 401, {"error": "Invalid credentials in Authorization header"}
        path = path.split("?")[0]
        if (method, path) == ("GET", "/api/whoami-v2"):
            return 200, {"type": "user", "name": "me", "auth": {"accessToken": {"role": "write"}}}
        if (method, path) == ("POST", "/api/repos/create"):
            settings = json.loads(body)
            repo_id = f"{settings.get('organization') or 'me'}/{settings['name']}"
            if repo_id in self.repos:  # HfApi.create_repo(exist_ok=True) takes this as "already there"
                return 409, {"error": "You already created this model repo", "url": f"{self.url}/{repo_id}"}
            self.repos[repo_id] = settings
            return 200, {"url": f"{self.url}/{repo_id}"}
        if (method, path) == ("POST", "/api/validate-yaml"):
            return 200, {"errors": [], "warnings": []}
        if method == "POST" and (found := re.fullmatch(r"/api/models/(.+/.+)/preupload/main", path)):
            if found.group(1) not in self.repos:
                return 404, {"error": "Repository not found"}
            files = json.loads(body)["files"]
            return 200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}
        if method == "POST" and (found := re.fullmatch(r"/api/models/(.+/.+)/commit/main", path)):
            return self.commit(found.group(1), body)
        return 404, {"error": f"fake hub: no {method} {path}"}

    def commit(self, repo_id: str, body: bytes) -> tuple[int, dict]:
        if repo_id not in self.repos:
            return 404, {"error": "Repository not found"}
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        for line in lines:
            if line["key"] == "file":
                self.files.setdefault(repo_id, {})[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
            elif line["key"] != "header":
                return 400, {"error": f"fake hub: no {line['key']} operations"}
        summary = next(line["value"]["summary"] for line in lines if line["key"] == "header")
        self.commits.setdefault(repo_id, []).append(summary)
        oid = f"{len(self.commits[repo_id]):040x}"
        return 200, {"commitUrl": f"{self.url}/{repo_id}/commit/{oid}", "commitOid": oid}


def _handler(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            hub.requests.append((self.command, self.path))
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if hub.drop:
                self.close_connection = True
                return
            status, payload = hub.answer(self.command, self.path, self.headers, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status >= 400:
                self.send_header("X-Error-Message", payload["error"])
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_HEAD = _serve

        def log_message(self, *args) -> None:  # quiet: the test reads hub.requests
            pass

    return Handler
