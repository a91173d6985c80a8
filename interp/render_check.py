"""Open a report in headless Chromium and say whether every figure drew (and nothing tried the network)."""

import dataclasses
import html
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interp.errors import DataError, FtmechError


@dataclass(frozen=True, kw_only=True)
class RenderCheck:
    """What headless Chromium saw: how many plot divs drew an SVG, and any script errors or blocked loads."""

    n_figures: int  # plot divs in the page
    n_rendered: int  # of those, how many drew their SVG with at least one trace
    not_rendered: tuple[str, ...]  # ids of the divs that did not draw
    errors: tuple[str, ...]  # window errors, console.error calls, unhandled rejections, CSP violations
    screenshot: str | None  # PNG path, when one was asked for

    @property
    def ok(self) -> bool:
        return self.n_rendered == self.n_figures and not self.errors

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)
STATUS_ID = "ftmech-render-status"

# Runs before anything else in a copy of the page: records errors, then (after load) the render status.
_PROBE_JS = """
(function () {
  var errors = [];
  window.addEventListener("error", function (e) {
    var where = e.filename ? " (" + e.filename.split("/").pop() + ":" + e.lineno + ")" : "";
    errors.push("error: " + (e.message || (e.target && (e.target.src || e.target.href)) || "?") + where);
  }, true);
  window.addEventListener("unhandledrejection", function (e) { errors.push("unhandled rejection: " + e.reason); });
  document.addEventListener("securitypolicyviolation", function (e) {
    errors.push("blocked load: " + e.blockedURI + " (" + e.violatedDirective + ")");
  });
  var consoleError = console.error;
  console.error = function () {
    errors.push("console.error: " + Array.prototype.map.call(arguments, String).join(" "));
    return consoleError.apply(console, arguments);
  };
  function status(final) {
    var divs = Array.prototype.slice.call(document.querySelectorAll(".plotly-graph-div"));
    var missing = divs.filter(function (d) {
      return !(d.querySelector("svg.main-svg") && d._fullData && d._fullData.length > 0);
    }).map(function (d) { return d.id; });
    if (missing.length && !final) { return false; }
    var out = document.createElement("pre");
    out.id = "__STATUS_ID__";
    out.style.display = "none";
    out.textContent = JSON.stringify({figures: divs.length, missing: missing, errors: errors});
    document.body.appendChild(out);
    return true;
  }
  window.addEventListener("load", function () {
    var tries = 0;
    (function poll() { if (!status(++tries > 50)) { setTimeout(poll, 100); } })();
  });
})();
""".replace("__STATUS_ID__", STATUS_ID)


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary on PATH, or None."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def check_report_renders(
    path: str | Path,
    *,
    screenshot: str | Path | None = None,
    window_size: tuple[int, int] = (1200, 3000),
    timeout_s: float = 60.0,
    chromium: str | None = None,
) -> RenderCheck:
    """Open the report in headless Chromium (no network needed) and report which figures drew.

    A copy of the page gets a small script, run first, that records JavaScript errors, ``console.error``
    calls and loads blocked by the page's policy, and after load writes the render status into the DOM,
    which ``--dump-dom`` prints. ``screenshot`` (a PNG path) is taken of the original page.
    """
    path = Path(path).resolve()
    binary = chromium or find_chromium()
    if binary is None:
        raise FtmechError(
            "no Chromium binary on PATH; install it (apt-get install chromium) or pass chromium="
        )
    page = path.read_text()
    head = re.search(r"<head[^>]*>", page, re.I)
    if head is None:
        raise DataError(f"{path} has no <head>; check_report_renders needs an HTML page")
    probed = page[: head.end()] + f"<script>{_PROBE_JS}</script>" + page[head.end() :]
    with tempfile.TemporaryDirectory(prefix="ftmech-chromium-") as tmp:
        copy = Path(tmp) / path.name
        copy.write_text(probed)
        dom = _chromium(binary, tmp, ["--dump-dom", "--virtual-time-budget=15000", copy.as_uri()], timeout_s)
        shot = None
        if screenshot is not None:
            shot = Path(screenshot).resolve()
            shot.parent.mkdir(parents=True, exist_ok=True)
            width, height = window_size
            _chromium(
                binary,
                tmp,
                [f"--screenshot={shot}", f"--window-size={width},{height}", path.as_uri()],
                timeout_s,
            )
            if not shot.is_file():
                raise FtmechError(f"Chromium wrote no screenshot to {shot}")
    match = re.search(rf'<pre id="{STATUS_ID}"[^>]*>(.*?)</pre>', dom, re.S)
    if match is None:
        return RenderCheck(
            n_figures=0,
            n_rendered=0,
            not_rendered=(),
            errors=(
                "the page never reported its render status: it did not finish loading or a script broke",
            ),
            screenshot=str(shot) if shot else None,
        )
    status = json.loads(html.unescape(match.group(1)))
    return RenderCheck(
        n_figures=status["figures"],
        n_rendered=status["figures"] - len(status["missing"]),
        not_rendered=tuple(status["missing"]),
        errors=tuple(status["errors"]),
        screenshot=str(shot) if shot else None,
    )


def _chromium(binary: str, profile_root: str, args: list[str], timeout_s: float) -> str:
    profile = tempfile.mkdtemp(prefix="profile-", dir=profile_root)
    command = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise FtmechError(f"Chromium did not finish within {timeout_s:.0f}s: {' '.join(command)}") from None
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-3:]
        raise FtmechError(f"Chromium exited with {done.returncode}: {' | '.join(tail)}")
    return done.stdout
