#!/usr/bin/env python3
"""Run a shipped PreciseCache workflow headless on a real ComfyUI, the way users drive it over HTTP.

    python3 scripts/run_workflow.py                       # the demo (trained tiny Wan, no downloads)
    python3 scripts/run_workflow.py workflows/api/X.json  # any API-format workflow

ComfyUI is found through COMFYUI_DIR, then ../ComfyUI, then /opt/ComfyUI. The server runs with
``--base-directory`` set to a folder of ours (default ``./comfy_run``) whose ``custom_nodes/`` links
to this pack (which lists its own models/ folder, the demo model, to ComfyUI), so the user's own
ComfyUI folders are never written. Prints the PreciseCache report and where the outputs went.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_WORKFLOW = REPO / "workflows" / "api" / "precisecache_demo.json"


def find_comfyui() -> Path:
    candidates = [os.environ.get("COMFYUI_DIR"), str(REPO.parent / "ComfyUI"), "/opt/ComfyUI"]
    for path in filter(None, candidates):
        if (Path(path) / "main.py").is_file() and (Path(path) / "comfy").is_dir():
            return Path(path).resolve()
    sys.exit("No ComfyUI found: set COMFYUI_DIR to a ComfyUI checkout (one holding main.py and comfy/), "
             "or place it at ../ComfyUI or /opt/ComfyUI.")


def prepare_base_dir(base: Path) -> None:
    for sub in ("custom_nodes", "models/diffusion_models", "input", "output", "temp", "user/default"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    link = base / "custom_nodes" / "PreciseCache"  # the demo model comes with the pack (models/)
    if link.is_symlink() and link.resolve() != REPO:
        link.unlink()
    if not link.exists():
        link.symlink_to(REPO)
    settings = base / "user" / "default" / "comfy.settings.json"
    if not settings.exists():
        settings.write_text(json.dumps({"Comfy.TutorialCompleted": True}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url: str, payload: dict | None = None, timeout: float = 30.0) -> dict:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read().decode())


def wait_ready(url: str, server: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"ComfyUI exited during start-up (code {server.returncode}); log tail:\n{tail(log)}")
        try:
            http_json(url + "/system_stats", timeout=5)
            return
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.5)
    sys.exit(f"ComfyUI did not answer within {timeout:.0f} s; log tail:\n{tail(log)}")


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def run(workflow: Path, base: Path, timeout: float) -> int:
    comfy = find_comfyui()
    prepare_base_dir(base)
    graph = json.loads(workflow.read_text())
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = base / "comfyui.log"
    command = [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
               "--disable-auto-launch", "--disable-api-nodes", "--base-directory", str(base)]
    print(f"ComfyUI: {comfy}\nbase directory: {base}\nworkflow: {workflow}")
    with open(log, "w") as log_file:
        server = subprocess.Popen(command, cwd=comfy, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        wait_ready(url, server, log, timeout=120)
        try:
            prompt_id = http_json(url + "/prompt", {"prompt": graph, "client_id": str(uuid.uuid4())})["prompt_id"]
        except urllib.error.HTTPError as error:
            print(f"ComfyUI refused the workflow:\n{error.read().decode(errors='replace')}", file=sys.stderr)
            return 2
        started = time.monotonic()
        while True:
            entry = http_json(f"{url}/history/{prompt_id}").get(prompt_id)
            if entry and entry.get("status", {}).get("status_str") in ("success", "error"):
                break
            if time.monotonic() - started > timeout:
                print(f"timed out after {timeout:.0f} s; log tail:\n{tail(log)}", file=sys.stderr)
                return 3
            if server.poll() is not None:
                print(f"ComfyUI died; log tail:\n{tail(log)}", file=sys.stderr)
                return 3
            time.sleep(0.5)
        status = entry.get("status", {})
        if status.get("status_str") != "success":
            messages = [m for m in status.get("messages", []) if m[0] == "execution_error"]
            print(f"the workflow failed: {json.dumps(messages, indent=1)[:4000]}", file=sys.stderr)
            return 4
        print(f"done in {time.monotonic() - started:.1f} s")
        for node_id, output in entry.get("outputs", {}).items():
            for text in output.get("text", []):
                print(f"\n[node {node_id}]\n{text}")
            for image in output.get("images", []):
                folder = base / image.get("type", "output") / image.get("subfolder", "")
                print(f"[node {node_id}] image: {folder / image['filename']}")
        return 0
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workflow", nargs="?", type=Path, default=DEFAULT_WORKFLOW,
                        help="API-format workflow JSON (default: the demo)")
    parser.add_argument("--base-dir", type=Path, default=REPO / "comfy_run",
                        help="ComfyUI --base-directory to use (default: ./comfy_run)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the workflow")
    args = parser.parse_args()
    if not args.workflow.is_file():
        sys.exit(f"workflow not found: {args.workflow}")
    return run(args.workflow.resolve(), args.base_dir.resolve(), args.timeout)


if __name__ == "__main__":
    sys.exit(main())
