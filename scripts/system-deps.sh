#!/usr/bin/env bash
# Install the Debian packages that napari-nascsmri needs, if any is missing.
#   scripts/system-deps.sh test   -> real scans, BART, Xvfb and the Qt xcb libraries (tests)
#   scripts/system-deps.sh demo   -> BART (the demo falls back to the PyTorch TV solver without it)
set -euo pipefail
case "${1:-test}" in
  demo) packages=(bart) ; required=0 ;;
  test) packages=(mricron-data insighttoolkit5-examples bart xvfb xauth libgl1 libegl1
                  libgl1-mesa-dri libglib2.0-0 libfontconfig1 libdbus-1-3 libxkbcommon-x11-0
                  libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-cursor0 libxcb-image0
                  libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xfixes0 libxcb-xkb1)
        required=1 ;;
  *) echo "usage: $0 test|demo" >&2; exit 2 ;;
esac
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
  echo "need root to install: ${missing[*]}" >&2; [ "$required" -eq 1 ] && exit 1 || exit 0
fi
for attempt in 1 2 3 4 5; do   # another process may briefly hold the apt lock
  if $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
    exit 0
  fi
  echo "apt-get failed (attempt $attempt), retrying in 10 s" >&2; sleep 10
done
[ "$required" -eq 1 ] && exit 1 || { echo "continuing without: ${missing[*]}" >&2; exit 0; }
