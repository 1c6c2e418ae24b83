"""Exec into a pod as a stream of frames: bulk output straight to a file, stdin round trips, a known exit status.

``kubernetes.stream``'s ``WSClient`` suits short commands: ``update()`` appends every frame to one
buffer per channel (``buf += data``) and keeps reading while frames are waiting, so a large, fast output
costs time quadratic in its size; it also keeps a second copy of all output (``capture_all``), and its
``returncode`` is None when the command has not finished (which ``int(code or 0)`` read as success).
Here the websocket it opened is read one frame at a time instead (``recv_data_frame``, websocket-client's
own API), each frame goes where it belongs as it arrives, and an exit status that never came is an error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from harness.errors import FaultError
from harness.platforms.kubernetes.api import KubeApi

__all__ = ["STDERR", "STDOUT", "PodExec", "exit_code"]

STDIN, STDOUT, STDERR, STATUS = 0, 1, 2, 3  # channels of the v4/v5 exec protocols
_CLOSE_CHANNEL = 255  # v5: "this channel is closed" (never sent by a v4 server)


def exit_code(status: str | bytes, where: str) -> int:
    """The command's exit code from the exec's status channel (a metav1.Status); FaultError when it says none.

    Success is 0; ``NonZeroExitCode`` carries the code as the ``ExitCode`` cause. Anything else (no status
    at all: the stream was cut; a failure without a code: the container is gone) is not an exit code.
    """
    text = status.decode(errors="replace") if isinstance(status, bytes) else status
    try:
        doc = json.loads(text) if text.strip() else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise FaultError(f"exec in {where}: no exit status came back (the stream was cut: {text.strip()[:200]!r})")
    if doc.get("status") == "Success":
        return 0
    for cause in (doc.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message", ""))
            except ValueError:
                break
    raise FaultError(f"exec in {where} failed without an exit code: {doc.get('message') or text.strip()[:300]}")


class PodExec:
    """One exec: ``frames()`` yields ``(channel, bytes)`` as they arrive, ``send()`` writes stdin, ``status()``.

    Every exec has an ApiClient of its own: ``stream`` swaps the client's ``call_api`` while it connects,
    so execs sharing a client across threads could leave it speaking websocket (see ``faults.exec_raw``).
    """

    def __init__(self, api: KubeApi, namespace: str, pod: str, command: list[str], stdin: bool = False,
                 container: str = "", idle_timeout_s: float = 60.0) -> None:
        from kubernetes import client as k8s
        from kubernetes.stream import stream

        self.where = f"pod {namespace}/{pod}"
        self._own = k8s.ApiClient(api.client.configuration)
        try:
            self._ws: Any = stream(
                k8s.CoreV1Api(self._own).connect_get_namespaced_pod_exec, pod, namespace, command=command,
                stderr=True, stdin=stdin, stdout=True, tty=False, _preload_content=False, binary=True,
                **({"container": container} if container else {}),
            )
        except Exception as exc:
            self._own.close()  # type: ignore[no-untyped-call]  # the client library is untyped
            raise FaultError(f"exec in {self.where} failed to start: {exc}") from exc
        self._ws.sock.settimeout(idle_timeout_s)  # a stream that goes silent this long is cut, not finished
        self._status = b""
        self.closed = False

    def __enter__(self) -> PodExec:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._ws.close()
        finally:
            self._own.close()  # type: ignore[no-untyped-call]  # the client library is untyped

    def send(self, data: bytes) -> None:
        from websocket import ABNF

        self._ws.sock.send(bytes([STDIN]) + data, opcode=ABNF.OPCODE_BINARY)

    def frames(self) -> Iterator[tuple[int, bytes]]:
        """Output frames until the server closes the stream; the status channel is kept for ``status()``.

        FaultError when nothing arrived for ``idle_timeout_s`` or the connection broke."""
        from websocket import ABNF, WebSocketConnectionClosedException, WebSocketException

        while not self.closed:
            try:
                opcode, frame = self._ws.sock.recv_data_frame(True)
            except WebSocketConnectionClosedException:
                self.closed = True  # closed without a close frame: ``status()`` says whether it had finished
                return
            except (WebSocketException, OSError) as exc:  # timeouts are both, depending on the version
                raise FaultError(f"exec in {self.where}: the stream broke or went silent: "
                                 f"{type(exc).__name__}: {exc}") from exc
            if opcode == ABNF.OPCODE_CLOSE:
                self.closed = True
                return
            data = bytes(frame.data or b"")
            if opcode not in (ABNF.OPCODE_BINARY, ABNF.OPCODE_TEXT) or not data or data[0] == _CLOSE_CHANNEL:
                continue
            if data[0] == STATUS:
                self._status += data[1:]
            elif len(data) > 1:
                yield data[0], data[1:]

    def status(self) -> int:
        """The exit code once the stream has ended; FaultError when it has not, or no code came back."""
        if not self.closed:
            raise FaultError(f"exec in {self.where}: asked for the exit status before the command finished")
        return exit_code(self._status, self.where)
