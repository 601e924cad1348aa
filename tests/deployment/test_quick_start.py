"""The README's quick start, as a newcomer types it, in a fresh clone: the quick-start line, then
the three simulator lines in a second "terminal", each logging in with the code it shows itself
(its `✉` lines) and reaching the dose status.

The clone is `git clone` of this checkout (its committed state). The virtualenv is made by the
README's own line, but its dependencies come from the test's interpreter, so that CI does not
download and install ~80 packages (a minute and more) for one test: the test creates `.venv` first
with this interpreter and adds a `.pth` file naming this interpreter's site-packages, then runs the
README's line unchanged. `python3 -m venv .venv` keeps the folder; `pip install -e .` finds every
dependency installed and builds only the project (its build isolation fetches setuptools through
pip's usual index and cache, as for any user). HOST and PORT (a free port) and OTP_RESEND_SECONDS (the next code 2 s after the last, not a minute: the
three channels log one person in one after another) are the only service settings given; no other setting
of the test's environment reaches it.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
PHONE = "+84901234567"
AN_STATUS = "Nguyen Van An, CCCD 001******345:"  # SMS and USSD strip diacritics
AN_STATUS_TELEGRAM = "Nguyễn Văn An, CCCD 001******345:"


def readme_lines() -> tuple[str, list[str]]:
    """The quick-start line and the three simulator lines, as the README prints them."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    lines = [line for block in re.findall(r"```sh\n(.*?)```", quick, re.S) for line in block.splitlines()]
    start = next(line for line in lines if "venv" in line and line.rstrip().endswith("main.py"))
    simulators = [line for line in lines if " main.py simulate " in line]
    return start, simulators


class Terminal:
    """A command run by bash in the clone, fed line by line; its output read as it comes."""

    def __init__(self, command: str, cwd: Path, env: dict[str, str], log: Path | None = None) -> None:
        self.command = command
        self.process = subprocess.Popen(
            ["bash", "-c", command],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.output = ""
        self._chunks: queue.Queue[str] = queue.Queue()
        self._log = log.open("w", encoding="utf-8") if log else None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        while chunk := os.read(self.process.stdout.fileno(), 65536):
            self._chunks.put(chunk.decode("utf-8", errors="replace"))

    def _drain(self) -> None:
        while not self._chunks.empty():
            text = self._chunks.get()
            self.output += text
            if self._log:
                self._log.write(text)
                self._log.flush()

    def expect(self, pattern: str, since: int = 0, timeout: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            self._drain()
            found = re.search(pattern, self.output[since:])
            if found:
                return found
            if time.monotonic() > deadline or self.process.poll() is not None:
                time.sleep(0.2)
                self._drain()
                found = re.search(pattern, self.output[since:])
                if found:
                    return found
                raise AssertionError(f"{self.command!r}: {pattern!r} not seen; output:\n{self.output[-4000:]}")
            time.sleep(0.05)

    def type(self, line: str) -> int:
        """Types a line; returns where the answer to it starts in `output`."""
        self._drain()
        mark = len(self.output)
        assert self.process.stdin is not None
        self.process.stdin.write((line + "\n").encode())
        self.process.stdin.flush()
        return mark

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._drain()
        if self._log:
            self._log.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    target = tmp_path / "vaxchannel"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(target)], check=True, timeout=120)
    # The virtualenv the README's line makes, with this interpreter's packages under it (see above).
    subprocess.run([sys.executable, "-m", "venv", str(target / ".venv")], check=True, timeout=120)
    here = sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]
    venv_lib = next((target / ".venv" / "lib").glob("python3*/site-packages"))
    (venv_lib / "test_interpreter_packages.pth").write_text("\n".join(dict.fromkeys(here)) + "\n")
    return target


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    shim = tmp_path / "bin"  # `python3` in the README's line: the test's interpreter
    shim.mkdir()
    (shim / "python3").symlink_to(sys.executable)
    passed = {  # how this machine reaches a package index (pip's own settings, proxies, certificates)
        k: v for k, v in os.environ.items() if k.startswith("PIP_") or k.lower() in _NETWORK_SETTINGS
    }
    return passed | {
        "PATH": f"{shim}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": os.environ.get("HOME", str(tmp_path)),  # pip's cache
        "LANG": "C.UTF-8",
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
        # one code a minute per person: the three channels log the same person in one after another,
        # so the test lets the next code go 2 s after the last instead of waiting two minutes
        "OTP_RESEND_SECONDS": "2",
    }


_NETWORK_SETTINGS = {
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "ssl_cert_file",
    "requests_ca_bundle",
    "xdg_config_home",
    "xdg_cache_home",
}


@pytest.fixture
def server(clone: Path, env: dict[str, str], tmp_path: Path) -> Iterator[Terminal]:
    start, _ = readme_lines()
    terminal = Terminal(start, clone, env, log=tmp_path / "quick-start.log")
    base = f"http://127.0.0.1:{env['PORT']}"
    try:
        deadline = time.monotonic() + 240
        while True:
            terminal._drain()
            assert terminal.process.poll() is None, f"the quick start exited:\n{terminal.output[-4000:]}"
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"no /healthz:\n{terminal.output[-4000:]}"
            time.sleep(0.5)
        yield terminal
    finally:
        terminal.stop()
    with socket.socket() as s:  # the service is gone
        assert s.connect_ex(("127.0.0.1", int(env["PORT"]))) != 0


def _wait_if_told(terminal: Terminal, since: int, pattern: str) -> bool:
    """One new code a minute per person: when the service says how long to wait, wait that long."""
    told = re.search(pattern, terminal.output[since:])
    if told is None:
        return False
    time.sleep(int(told.group(1)) + 1)
    return True


def ussd(clone: Path, env: dict[str, str], line: str, tmp_path: Path) -> str:
    phone = Terminal(line, clone, env, log=tmp_path / "ussd.log")
    try:
        phone.expect(r"\[dial\] ")
        mark = phone.type("")  # Enter dials
        phone.expect(r"1 Mui da tiem[\s\S]*> ", mark)
        mark = phone.type("1")
        phone.expect(r"CCCD[\s\S]*> ", mark)
        mark = phone.type("001085012345")
        phone.expect(r"NNTTNNNN[\s\S]*> ", mark)
        mark = phone.type("14031985")
        code = phone.expect(rf"✉  SMS to \{PHONE}: VaxChannel: ma xac thuc (\d{{6}})", mark).group(1)
        mark = phone.type(code)
        phone.expect(re.escape(AN_STATUS) + r"\nMui 1: AstraZeneca", mark)
        phone.type("q")
        phone.process.wait(timeout=20)
        assert phone.process.returncode == 0
        return phone.output
    finally:
        phone.stop()


def sms(clone: Path, env: dict[str, str], line: str, tmp_path: Path) -> str:
    phone = Terminal(line, clone, env, log=tmp_path / "sms.log")
    try:
        phone.expect(r"sms> ")
        while True:
            mark = phone.type("DK 001085012345 14031985")
            phone.expect(r"← [^\n]*\n[\s\S]*sms> ", mark)
            if not _wait_if_told(phone, mark, r"doi (\d+) giay"):
                break
        code = phone.expect(rf"✉  SMS to \{PHONE}: VaxChannel: ma xac thuc (\d{{6}})", mark).group(1)
        mark = phone.type(code)
        phone.expect(r"← [^\n]*\n[\s\S]*sms> ", mark)
        mark = phone.type("MUI")
        phone.expect(r"← " + re.escape(AN_STATUS) + r"\nMui 1: AstraZeneca", mark)
        phone.type("q")
        phone.process.wait(timeout=20)
        assert phone.process.returncode == 0
        return phone.output
    finally:
        phone.stop()


def telegram(clone: Path, env: dict[str, str], line: str, tmp_path: Path) -> str:
    phone = Terminal(line, clone, env, log=tmp_path / "telegram.log")
    try:
        started = time.monotonic()
        phone.expect(r"you are a Telegram user whose phone is \+84901234567", timeout=30)
        ready_in = time.monotonic() - started
        mark = phone.type("/status")  # asked before logging in: it follows the code
        phone.expect(r"🤖 Nhập số CCCD[\s\S]*\(type !contact\)", mark)
        while True:
            mark = phone.type("!contact")
            phone.expect(r"🤖 (Mã 6 số|Vui lòng)", mark)
            time.sleep(1)
            if not _wait_if_told(phone, mark, r"đợi (\d+) giây"):
                break
        code = phone.expect(rf"✉  SMS to \{PHONE}: VaxChannel: ma xac thuc (\d{{6}})", mark).group(1)
        mark = phone.type(code)
        phone.expect(r"🤖 " + re.escape(AN_STATUS_TELEGRAM) + r"\nMũi 1: AstraZeneca", mark)
        phone.type("!quit")
        phone.process.wait(timeout=20)
        assert phone.process.returncode == 0
        assert "Starting the service" not in phone.output  # it used the running one
        assert ready_in < 15, f"the Telegram simulator took {ready_in:.1f} s to attach"
        return phone.output
    finally:
        phone.stop()


@pytest.mark.timeout(900)
def test_readme_quick_start_and_the_three_simulators_in_a_fresh_clone(
    clone: Path, env: dict[str, str], server: Terminal, tmp_path: Path
) -> None:
    start, simulators = readme_lines()
    assert start.startswith("python3 -m venv .venv && .venv/bin/pip install ")
    assert simulators == [
        f".venv/bin/python main.py simulate {channel} --phone {PHONE}" for channel in ("ussd", "sms", "telegram")
    ]
    banner = server.expect(r"  simulator     : (.*?)   \(or ").group(1)
    assert banner == simulators[0]  # the banner prints the command that works here
    pip_said = server.output.split("VaxChannel on http", 1)[0]
    assert "Successfully installed vaxchannel" in pip_said  # progress, not 40 s of silence
    assert "local Bot API stand-in" in server.output

    ussd(clone, env, simulators[0], tmp_path)
    sms(clone, env, simulators[1], tmp_path)
    telegram(clone, env, simulators[2], tmp_path)
