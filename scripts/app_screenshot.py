"""A screenshot of `ntlb app` for the README: the app on loopback with the first world example explained as the
page opens, photographed by headless Chromium.

    python scripts/app_screenshot.py [--out docs/app.png] [--width 1400] [--height 1100]

Skips cleanly (exit 0, one line) where no Chromium or Chrome is installed.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "docs" / "app.png"))
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1100)
    args = parser.parse_args()
    browser = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    if browser is None:
        print("skipped: no Chromium or Chrome on PATH (apt-get install chromium)")
        return 0
    import ntlb
    from ntlb.app import serve

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = serve(ntlb.load_model(), port=port, preload=True, block=False)
    try:
        time.sleep(1)
        with tempfile.TemporaryDirectory() as profile:
            shot = Path(profile) / "app.png"
            subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                            f"--user-data-dir={profile}", f"--window-size={args.width},{args.height}",
                            "--virtual-time-budget=20000", f"--screenshot={shot}", f"http://127.0.0.1:{port}/"],
                           check=True, capture_output=True, timeout=180)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, args.out)
    finally:
        app.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
