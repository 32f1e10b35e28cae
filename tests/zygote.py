"""Test processes without TensorFlow's import: forked from a zygote.

A command under test in its own process (its exit status, its one line, a
signal, kill -9, a worker of a cluster) spends about 5 s of CPU importing
TensorFlow before it does anything; the suite starts dozens. A zygote is one
process per test process that has imported TensorFlow (as the commands load
it, `cli.load_tensorflow`), Keras and matplotlib's pyplot, and nothing
more: it has run no op, so it holds no TensorFlow state a fork could tear. It
forks a child for each command, which sets up what exec would have given it
(its own stdin/stdout/stderr, working directory, environment, argv, default
signal handlers) and runs `python -m MODULE`, `python -c CODE` or `python
SCRIPT` as the interpreter would, exit handlers included. The child is a
process of its own: its pid takes signals, its exit status is the program's.

What the fork cannot give a command is what happens while Python starts: a
`sitecustomize` on PYTHONPATH, or variables read when TensorFlow is
imported. A command whose environment changes those from the zygote's is
started by exec as before (`start` decides). The benchmark and a few tests
still start the programs by exec, as a user types them.

A cluster's workers are forked by the launcher (scripts/launch_local.py,
given `fork_worker`), itself a child of the zygote.
"""

import atexit
import json
import os
import runpy
import select
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from typing import List, Optional

from absl import logging as absl_logging

# Variables a child may have that differ from the zygote's: read by the
# programs when they run, not when Python or TensorFlow start.
RUN_TIME_VARIABLES = {"TF_CONFIG", "TFDS_DATA_DIR", "XDG_CACHE_HOME",
                      "PYTHONUNBUFFERED", "PYTEST_CURRENT_TEST"}


# --- the child: becomes the command ------------------------------------------

def _exit_code(e: SystemExit) -> int:
  if e.code is None:
    return 0
  if isinstance(e.code, int):
    return e.code & 0xFF
  print(e.code, file=sys.stderr)
  return 1


def _run(argv: List[str]) -> None:
  """argv as after `python`: -m MODULE ARGS, -c CODE ARGS or SCRIPT ARGS."""
  if argv[0] == "-m":
    sys.argv = [argv[1], *argv[2:]]
    sys.path[0] = os.getcwd()
    runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
  elif argv[0] == "-c":
    sys.argv = ["-c", *argv[2:]]
    sys.path[0] = os.getcwd()
    exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__"})
  else:
    sys.argv = list(argv)
    sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
    runpy.run_path(argv[0], run_name="__main__")


def become(argv: List[str], cwd: str, env: dict) -> None:
  """In a fresh fork whose fds 0, 1 and 2 are set: runs the command, then
  ends the process with its exit status. Never returns."""
  code = 1
  try:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for s in (signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP):
      signal.signal(s, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    unbuffered = bool(env.get("PYTHONUNBUFFERED"))
    # The streams Python would have made for these fds.
    sys.stdin = open(0, "r", closefd=False)  # pylint: disable=consider-using-with
    sys.stdout = open(1, "w", closefd=False)  # pylint: disable=consider-using-with
    sys.stdout.reconfigure(write_through=unbuffered)
    sys.stderr = open(2, "w", closefd=False, errors="backslashreplace")  # pylint: disable=consider-using-with
    sys.stderr.reconfigure(line_buffering=True)
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = (sys.stdin, sys.stdout,
                                                     sys.stderr)
    # absl's handler took the zygote's stderr when absl was imported.
    absl_logging.get_absl_handler().python_handler.stream = sys.stderr
    try:
      _run(argv)
      code = 0
    except SystemExit as e:
      code = _exit_code(e)
    except KeyboardInterrupt:
      traceback.print_exc()
      sys.stderr.flush()
      signal.signal(signal.SIGINT, signal.SIG_DFL)
      os.kill(os.getpid(), signal.SIGINT)
    except BaseException:  # what the interpreter prints, then status 1
      traceback.print_exc()
    threading._shutdown()  # as the interpreter does at exit  # pylint: disable=protected-access
    atexit._run_exitfuncs()  # pylint: disable=protected-access
    for stream in (sys.stdout, sys.stderr):
      stream.flush()
  finally:
    os._exit(code)


class _Process:
  """A process as subprocess.Popen shows one: pid, returncode, poll, wait,
  send_signal, kill. Subclasses say how its status comes (`_status`)."""

  pid: int
  returncode: Optional[int] = None

  def _status(self, timeout: Optional[float]) -> Optional[int]:
    raise NotImplementedError

  def poll(self) -> Optional[int]:
    return self._status(0)

  def wait(self, timeout: Optional[float] = None) -> int:
    code = self._status(timeout)
    if code is None:
      raise subprocess.TimeoutExpired(f"process {self.pid}", timeout)
    return code

  def send_signal(self, signum: int) -> None:
    if self.returncode is None:
      os.kill(self.pid, signum)

  def kill(self) -> None:
    self.send_signal(signal.SIGKILL)


class _Forked(_Process):
  """A child this process forked (waited for at once, or polled)."""

  def __init__(self, pid: int, stdout=None):
    self.pid, self.stdout = pid, stdout

  def _status(self, timeout: Optional[float]) -> Optional[int]:
    if self.returncode is None:
      pid, status = os.waitpid(self.pid, 0 if timeout is None else
                               os.WNOHANG)
      if pid:
        self.returncode = os.waitstatus_to_exitcode(status)
    return self.returncode


def fork_worker(command: List[str], env: dict) -> _Forked:
  """launch_local's `start` in a child of the zygote: the worker forked from
  it, stdout and stderr into one pipe."""
  read, write = os.pipe()
  pid = os.fork()
  if pid == 0:
    os.close(read)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(write, 1)
    os.dup2(write, 2)
    os.close(write)
    os.close(devnull)
    become(command[1:], os.getcwd(), env)
  os.close(write)
  return _Forked(pid, os.fdopen(read, "rb"))


# --- the zygote ---------------------------------------------------------------

def _send(conn: socket.socket, message: dict) -> None:
  conn.send(json.dumps(message).encode())


def serve(path: str) -> None:
  """Forks a child for each request on the Unix socket at `path`; sends
  back its pid, then its exit status. Ends with the process that started
  it."""
  parent = os.getppid()
  listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
  listener.bind(path)
  listener.listen(64)
  wake_read, wake_write = os.pipe()
  os.set_blocking(wake_write, False)
  signal.set_wakeup_fd(wake_write)
  signal.signal(signal.SIGCHLD, lambda *_: None)
  selector = selectors.DefaultSelector()
  selector.register(listener, selectors.EVENT_READ)
  selector.register(wake_read, selectors.EVENT_READ)
  waiting = {}
  while os.getppid() == parent:
    for key, _ in selector.select(timeout=1):
      if key.fileobj is listener:
        conn, _ = listener.accept()
        message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
        request = json.loads(message)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
          for f in (listener, conn, *waiting.values()):
            f.close()
          for fd in (wake_read, wake_write):
            os.close(fd)
          for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
          become(request["argv"], request["cwd"], request["env"])
        for fd in fds:
          os.close(fd)
        _send(conn, {"pid": pid})
        waiting[pid] = conn
      else:
        os.read(wake_read, 4096)
    while waiting:
      try:
        pid, status = os.waitpid(-1, os.WNOHANG)
      except ChildProcessError:
        break
      if not pid:
        break
      conn = waiting.pop(pid)
      try:
        _send(conn, {"status": os.waitstatus_to_exitcode(status)})
      except OSError:
        pass  # the test that asked is gone
      conn.close()


# --- the test process's side ---------------------------------------------------

class Child(_Process):
  """A command the zygote forked: its status comes from the zygote;
  stdout/stderr when PIPE, and communicate."""

  def __init__(self, conn: socket.socket, stdout=None, stderr=None):
    self._conn, self.stdout, self.stderr = conn, stdout, stderr
    self.pid = json.loads(conn.recv(4096))["pid"]

  def _status(self, timeout: Optional[float]) -> Optional[int]:
    if self.returncode is None:
      ready, _, _ = select.select([self._conn], [], [], timeout)
      if not ready:
        return None
      self.returncode = json.loads(self._conn.recv(4096))["status"]
      self._conn.close()
    return self.returncode

  def communicate(self, timeout: Optional[float] = None):
    """(stdout, stderr) read to their end, once the child exited."""
    out = {}
    readers = [threading.Thread(target=lambda n=n, s=s: out.update(
        {n: s.read()}), daemon=True)
               for n, s in (("out", self.stdout), ("err", self.stderr)) if s]
    for r in readers:
      r.start()
    deadline = None if timeout is None else time.monotonic() + timeout
    for r in readers:
      r.join(None if deadline is None else max(0, deadline - time.monotonic()))
    self.wait(None if deadline is None else max(0, deadline - time.monotonic()))
    return out.get("out"), out.get("err")


class Zygote:
  """The zygote of this test process, started on first use."""

  def __init__(self, env: dict):
    self._env = dict(env)
    self._dir = tempfile.mkdtemp(prefix="zygote-")
    self.path = os.path.join(self._dir, "socket")
    self._proc = subprocess.Popen(
        [sys.executable, __file__, self.path], env=self._env,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    atexit.register(self.stop)

  def can_fork(self, env: dict) -> bool:
    """Whether a child with this environment is what exec would start."""
    keys = set(env) | set(self._env)
    return all(env.get(k) == self._env.get(k) for k in keys
               if k not in RUN_TIME_VARIABLES)

  def _connect(self) -> socket.socket:
    deadline = time.monotonic() + 120
    while True:
      conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
      try:
        conn.connect(self.path)
        return conn
      except (FileNotFoundError, ConnectionRefusedError):
        conn.close()
        if self._proc.poll() is not None or time.monotonic() > deadline:
          raise RuntimeError(f"the zygote did not start "
                             f"({self._proc.returncode})") from None
        time.sleep(0.05)

  def start(self, argv: List[str], cwd: str, env: dict, stdout, stderr,
            text: bool = True) -> Child:
    """argv after the interpreter; stdout/stderr: PIPE, STDOUT (stderr),
    None (this process's) or a file."""
    conn = self._connect()
    ours, theirs, keep = {}, [], []
    for name, target in (("stdout", stdout), ("stderr", stderr)):
      if target == subprocess.PIPE:
        read, write = os.pipe()
        ours[name] = os.fdopen(read, "r" if text else "rb")
        theirs.append(write)
        keep.append(write)
      elif target == subprocess.STDOUT:
        theirs.append(theirs[0])
      elif target is None:
        theirs.append(1 if name == "stdout" else 2)
      else:
        theirs.append(target if isinstance(target, int) else target.fileno())
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
      socket.send_fds(conn, [json.dumps(
          {"argv": argv, "cwd": str(cwd), "env": env}).encode()],
                      [devnull, *theirs])
    finally:
      os.close(devnull)
      for fd in keep:
        os.close(fd)
    return Child(conn, **ours)

  def stop(self) -> None:
    if self._proc.poll() is None:
      self._proc.terminate()
      self._proc.wait()
    try:
      os.unlink(self.path)
      os.rmdir(self._dir)
    except OSError:
      pass


if __name__ == "__main__":
  # Everything a command imports that costs time, and nothing that reads
  # the environment a test gives its command (TFDS reads TFDS_DATA_DIR).
  import numpy  # noqa: F401  pylint: disable=unused-import
  from logreg_tf import cli
  cli.load_tensorflow()  # as a command loads it (cli.HIDDEN_WHILE_LOADING)
  import keras  # noqa: F401  pylint: disable=unused-import
  from logreg_tf import figures
  figures.pyplot()  # as a run imports it to draw
  from absl import app, flags  # noqa: F401  pylint: disable=unused-import
  serve(sys.argv[1])
