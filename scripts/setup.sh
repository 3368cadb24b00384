#!/usr/bin/env bash
# tapnet set-up, idempotent: the Debian packages the labs and tests use, the npm
# dependencies, the native TAP addon and the TypeScript build. Quick when all is there.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*" >&2; }

major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$major" -lt 20 ]; then
  say "tapnet needs Node.js >= 20 (found $(node --version 2>/dev/null || echo none))"
  exit 1
fi

# command -> Debian package
declare -A want=(
  [ip]=iproute2 [ping]=iputils-ping [tcpdump]=tcpdump [tshark]=tshark
  [iperf3]=iperf3 [traceroute]=traceroute [ethtool]=ethtool [tracepath]=iputils-tracepath [arping]=iputils-arping [curl]=curl [nc]=netcat-openbsd [nft]=nftables [make]=make [g++]=g++ [python3]=python3
  [trafgen]=netsniff-ng
)
missing=()
# Some live in /usr/sbin (nft, trafgen), which a normal user's PATH on Debian lacks.
for cmd in "${!want[@]}"; do
  PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1 || missing+=("${want[$cmd]}")
done
[ -f /usr/include/pcap/pcap.h ] || missing+=(libpcap-dev)

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    say "missing Debian packages: ${missing[*]} — run this as root (sudo npm run setup)"
    exit 1
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    say "missing packages ${missing[*]} and no apt-get here: install them with your package manager"
    exit 1
  fi
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # The package lists may be absent on a fresh machine or image: update once.
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm dependencies (this also builds the native addon and the TypeScript: the
# package's install and prepare scripts).
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm dependencies"
  npm ci --no-audit --no-fund --loglevel=error
fi

# The native addon, when its sources are newer than the build.
addon=native/build/Release/tapnet.node
stale=0
[ -f "$addon" ] || stale=1
for f in native/*.c native/*.h native/binding.gyp; do
  [ "$f" -nt "$addon" ] && stale=1
done
if [ "$stale" = 1 ]; then
  say "building the native TAP addon"
  npm run --silent install
fi

# TypeScript (incremental: a no-op when nothing changed).
npx --no-install tsc -p tsconfig.json
bash scripts/link-bin.sh
