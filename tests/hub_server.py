"""A loopback fake of the Hugging Face Hub HTTP API, enough for the real `huggingface_hub` client to push.

It answers the calls that `create_repo`, `upload_folder`, `upload_file`, `create_commit` and transformers'
`push_to_hub` make for regular (non-LFS) files, as read from huggingface_hub 2.4's `hf_api.py` and
`_commit_api.py`, and keeps what it received in memory:

- `POST /api/repos/create`: creates an empty repository (409 if it exists, which `exist_ok=True` accepts);
- `POST /api/{type}s/{repo}/preupload/{revision}`: answers `uploadMode: "regular"` for every file, with the git
  oid of the stored file so that unchanged files are skipped as on the Hub;
- `POST /api/{type}s/{repo}/commit/{revision}`: reads the NDJSON body (header, `file` with base64 content,
  `deletedFile`, `deletedFolder`) and answers `commitUrl` / `commitOid`;
- `POST /api/validate-yaml`: parses the README front matter (400 with the YAML error if it does not parse);
- `HEAD` / `GET /{prefix}{repo}/resolve/{revision}/{path}`: serves stored files (404 `EntryNotFound` otherwise);
- `GET /api/{type}s/{repo}` (`repo_info`), `GET /api/{type}s/{repo}/tree/{revision}[/{path}]` (`list_repo_tree`, which
  `snapshot_download` calls; one page, files and folders) and `GET /api/whoami-v2`.

Reads serve the files of the last commit whatever revision is asked for: the fake keeps one version of each file.

Anything else is answered 404 and recorded in `FakeHub.unhandled`. LFS and xet uploads are not implemented: a
commit with an `lfsFile` line is refused with 400. Writes need an `Authorization: Bearer` header, as on the Hub.

`huggingface_hub` reads `HF_ENDPOINT` and `HF_HUB_OFFLINE` once, at import: the `fake_hub` fixture therefore
patches `huggingface_hub.constants`, the module-level `HfApi` and the `HfApi` that transformers keeps (`hf_api()`,
used by `Trainer` and `push_to_hub`) in this process, as well as the environment variables, which subprocesses started
inside the test inherit (they read them at their own import).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import transformers.utils.hub
import yaml
from huggingface_hub import constants, hf_api
from huggingface_hub.utils import close_session
from huggingface_hub.utils.sha import git_hash


FAKE_USER = "fake-user"
FAKE_TOKEN = "hf_fake_token_for_tests"
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*(\n|\Z)", re.DOTALL)


@dataclass
class FakeRepo:
    """A repository of the fake Hub: a single `main` branch, its files and its commit history."""

    repo_id: str
    repo_type: str
    visibility: str | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[dict] = field(default_factory=list)

    @property
    def head(self) -> str:
        """Oid of the last commit (a fixed initial oid for an empty repository)."""
        return self.commits[-1]["oid"] if self.commits else "0" * 40


@dataclass
class FakeHub:
    """What the fake Hub holds: its address, repositories keyed `(repo_type, repo_id)`, and a request log."""

    endpoint: str = ""
    repos: dict[tuple[str, str], FakeRepo] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    unhandled: list[tuple[str, str]] = field(default_factory=list)
    tokens: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def repo(self, repo_id: str, repo_type: str = "model") -> FakeRepo:
        """The repository `repo_id` of type `repo_type`; `KeyError` if it was never created."""
        return self.repos[(repo_type, repo_id)]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects; every answer sets Content-Length
    hub: FakeHub  # set on the subclass made by `serve_fake_hub`

    def log_message(self, format, *args):  # silence the default stderr logging
        pass

    # -- plumbing -------------------------------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while (size := int(self.rfile.readline().split(b";")[0].strip(), 16)) > 0:
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def _send(self, status: int, body: bytes | dict | None = None, headers: dict | None = None, head=False):
        payload = json.dumps(body).encode() if isinstance(body, dict) else (body or b"")
        self.send_response(status)
        if isinstance(body, dict):
            self.send_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            self.send_header(key, str(value))
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if not head:
            self.wfile.write(payload)

    def _error(self, status: int, message: str, code: str | None = None, head=False):
        headers = {"X-Error-Message": message} | ({"X-Error-Code": code} if code else {})
        self._send(status, {"error": message}, headers, head=head)

    def _authorized(self) -> bool:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            self._error(401, "Invalid credentials in Authorization header")
            return False
        with self.hub.lock:
            self.hub.tokens.add(auth.removeprefix("Bearer "))
        return True

    def _find_repo(self, repo_type: str, repo_id: str, head=False) -> FakeRepo | None:
        repo = self.hub.repos.get((repo_type, repo_id))
        if repo is None:
            self._error(404, f"Repository {repo_id} not found", "RepoNotFound", head=head)
        return repo

    def _dispatch(self, method: str):
        url = urlsplit(self.path)
        path, query = unquote(url.path), parse_qs(url.query)
        with self.hub.lock:
            self.hub.requests.append((method, path))
        body = self._read_body() if method == "POST" else b""
        api = r"/api/(?P<kind>models|datasets|spaces)/(?P<repo>[^/]+/[^/]+)"
        routes = [
            (("POST",), r"/api/repos/create", self._create_repo),
            (("POST",), r"/api/validate-yaml", self._validate_yaml),
            (("GET",), r"/api/whoami-v2", self._whoami),
            (("POST",), api + r"/preupload/(?P<rev>[^/]+)", self._preupload),
            (("POST",), api + r"/commit/(?P<rev>[^/]+)", self._commit),
            (("GET",), api + r"(/revision/(?P<rev>[^/]+))?", self._repo_info),
            (("GET",), api + r"/tree/(?P<rev>[^/]+)(/(?P<folder>.+))?", self._tree),
            (
                ("GET", "HEAD"),
                r"/(?P<kind>datasets/|spaces/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)",
                self._resolve,
            ),
        ]
        for methods, pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if match and method in methods:
                return handler(method=method, body=body, query=query, **match.groupdict())
        with self.hub.lock:
            self.hub.unhandled.append((method, path))
        self._error(404, f"The fake Hub does not implement {method} {path}", head=method == "HEAD")

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    # -- endpoints ------------------------------------------------------------------------------------------------

    def _create_repo(self, body, **_):
        if not self._authorized():
            return
        payload = json.loads(body)
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or FAKE_USER}/{payload['name']}"
        url = f"{self.hub.endpoint}/{URL_PREFIXES[repo_type]}{repo_id}"
        with self.hub.lock:
            if (repo_type, repo_id) in self.hub.repos:
                return self._send(409, {"error": "You already created this repo", "url": url})
            self.hub.repos[(repo_type, repo_id)] = FakeRepo(repo_id, repo_type, payload.get("visibility"))
        self._send(200, {"url": url, "name": repo_id})

    def _validate_yaml(self, body, **_):
        content = json.loads(body)["content"]
        match = FRONT_MATTER.match(content)
        try:
            metadata = yaml.safe_load(match.group(1)) if match else {}
        except yaml.YAMLError as error:
            return self._send(400, {"errors": [{"message": str(error)}], "warnings": []})
        if metadata is not None and not isinstance(metadata, dict):
            return self._send(400, {"errors": [{"message": "metadata must be a mapping"}], "warnings": []})
        self._send(200, {"errors": [], "warnings": []})

    def _whoami(self, **_):
        if self._authorized():
            self._send(200, {"type": "user", "name": FAKE_USER, "orgs": [], "auth": {"type": "access_token"}})

    def _preupload(self, kind, repo, rev, body, **_):
        if not self._authorized() or (found := self._find_repo(REPO_TYPES[kind], repo)) is None:
            return
        files = [
            {
                "path": item["path"],
                "uploadMode": "regular",
                "shouldIgnore": False,
                "oid": git_hash(found.files[item["path"]]) if item["path"] in found.files else None,
            }
            for item in json.loads(body)["files"]
        ]
        self._send(200, {"files": files, "commitOid": found.head})

    def _commit(self, kind, repo, rev, body, query, **_):
        if not self._authorized() or (found := self._find_repo(REPO_TYPES[kind], repo)) is None:
            return
        if rev != "main" or "create_pr" in query:
            return self._error(400, "The fake Hub only commits to main, without pull requests")
        header, added, deleted = {}, {}, []
        for line in body.splitlines():
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                header = value
            elif key == "file" and value.get("encoding") == "base64":
                added[value["path"]] = base64.b64decode(value["content"])
            elif key in ("deletedFile", "deletedFolder"):
                deleted.append((key, value["path"].rstrip("/")))
            else:
                return self._error(400, f"The fake Hub cannot commit a {key!r} operation (LFS/xet is not faked)")
        with self.hub.lock:
            for key, path in deleted:
                if key == "deletedFile":
                    found.files.pop(path, None)
                else:
                    for name in [name for name in found.files if name.startswith(path + "/")]:
                        del found.files[name]
            found.files.update(added)
            # Unique, as on the Hub: a client cache keyed by commit must never mix two servers' repositories.
            oid = hashlib.sha1(f"{uuid.uuid4()}{found.head}{header}{sorted(added)}".encode()).hexdigest()
            found.commits.append({"oid": oid, "summary": header.get("summary"), "files": sorted(added)})
        prefix = URL_PREFIXES[found.repo_type]
        self._send(200, {"commitUrl": f"{self.hub.endpoint}/{prefix}{repo}/commit/{oid}", "commitOid": oid})

    def _repo_info(self, kind, repo, rev=None, **_):
        if (found := self._find_repo(REPO_TYPES[kind], repo)) is None:
            return
        siblings = [{"rfilename": name} for name in sorted(found.files)]
        self._send(200, {"id": repo, "sha": found.head, "private": found.visibility == "private", "siblings": siblings})

    def _tree(self, kind, repo, query, folder=None, **_):
        if (found := self._find_repo(REPO_TYPES[kind], repo)) is None:
            return
        prefix = f"{folder.rstrip('/')}/" if folder else ""
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        entries = {}
        for name, content in sorted(found.files.items()):
            if not name.startswith(prefix):
                continue
            parts = name[len(prefix) :].split("/")
            for depth in range(1, len(parts)):  # the folders on the way, as the Hub lists them
                if recursive or depth == 1:
                    path = prefix + "/".join(parts[:depth])
                    entries.setdefault(
                        path, {"type": "directory", "path": path, "oid": git_hash(path.encode()), "size": 0}
                    )
            if recursive or len(parts) == 1:
                entries[name] = {"type": "file", "path": name, "oid": git_hash(content), "size": len(content)}
        if folder and not entries:
            return self._error(404, f"Entry {folder} not found", "EntryNotFound")
        body = json.dumps(list(entries.values())).encode()
        self._send(200, body, {"Content-Type": "application/json"})

    def _resolve(self, method, kind, repo, rev, file, **_):
        head = method == "HEAD"
        repo_type = {None: "model", "datasets/": "dataset", "spaces/": "space"}[kind]
        if (found := self._find_repo(repo_type, repo, head=head)) is None:
            return
        if file not in found.files:
            return self._error(404, f"Entry {file} not found", "EntryNotFound", head=head)
        content = found.files[file]
        headers = {"ETag": f'"{git_hash(content)}"', "X-Repo-Commit": found.head}
        self._send(200, content, headers, head=head)


@contextlib.contextmanager
def serve_fake_hub() -> Iterator[FakeHub]:
    """Run a fake Hub on a free port of 127.0.0.1 in a background thread; yields its `FakeHub` state.

    This only starts the server; use the `fake_hub` fixture (conftest.py) to also point `huggingface_hub` at it.
    """
    hub = FakeHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("FakeHubHandler", (_Handler,), {"hub": hub}))
    server.daemon_threads = True
    hub.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="fake-hub", daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextlib.contextmanager
def fake_hub_in_use(monkeypatch, cache: str) -> Iterator[FakeHub]:
    """A running fake Hub with `huggingface_hub` pointed at it, in this process and in subprocesses (the body of the
    `fake_hub` fixture of conftest.py; `monkeypatch` undoes the changes).

    Sets `HF_ENDPOINT`, a dummy `HF_TOKEN`, the Hub cache `cache` (downloads never reach the user's cache), disables
    telemetry, unsets `HF_HUB_OFFLINE` (which blocks even a loopback endpoint), and patches the values
    `huggingface_hub` read from them at import.
    """
    with serve_fake_hub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
        monkeypatch.setenv("HF_HUB_CACHE", cache)
        monkeypatch.setattr(constants, "HF_HUB_CACHE", cache)
        monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
        url_template = hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}"
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url_template)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
        # `huggingface_hub.create_repo`, `upload_folder`... are methods of an HfApi built at import; transformers
        # keeps the one its `hf_api()` built first: the test's is built anew, with the patched endpoint.
        monkeypatch.setattr(hf_api.api, "endpoint", hub.endpoint)
        monkeypatch.setattr(transformers.utils.hub, "_hf_api", None)
        close_session()  # a fresh HTTP client for the new endpoint, and again after the test
        yield hub
        close_session()


__all__ = ["FAKE_TOKEN", "FAKE_USER", "FakeHub", "FakeRepo", "fake_hub_in_use", "serve_fake_hub"]
