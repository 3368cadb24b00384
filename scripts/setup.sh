#!/usr/bin/env bash
# tapnet set-up, idempotent: the Debian packages tapnet uses, the npm dependencies,
# the native addon and the TypeScript build. Quick when all is there.
#
#   scripts/setup.sh            what labs, capture and the demo need (npm run setup/demo)
#   scripts/setup.sh --test     that, plus what the test suite drives (npm test), clang and
#                               libFuzzer for the native fuzz harnesses
#   scripts/setup.sh --bench    that, plus what the benchmark drives (npm run bench)
#
# Packages only one kind of lab needs (etcd, BIRD, podman…) are installed by
# `tapnet lab up` when such a lab is first brought up (src/lab/packages.ts).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*" >&2; }

major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$major" -lt 20 ]; then
  say "tapnet needs Node.js >= 20 (found $(node --version 2>/dev/null || echo none))"
  exit 1
fi

mode=core
case "${1:-}" in
  --test) mode=test ;;
  --bench) mode=bench ;;
  "") ;;
  *) say "unknown option '$1' (use --test or --bench)"; exit 2 ;;
esac

# command (or file) -> Debian package. Paths beginning with / are files.
declare -A want=(
  [ip]=iproute2 [ping]=iputils-ping [tcpdump]=tcpdump [tshark]=tshark
  [traceroute]=traceroute [ethtool]=ethtool [tracepath]=iputils-tracepath [arping]=iputils-arping
  [setpriv]=util-linux [curl]=curl [nc]=netcat-openbsd [nft]=nftables [make]=make [g++]=g++ [python3]=python3
  [/usr/include/pcap/pcap.h]=libpcap-dev
  [/usr/include/seccomp.h]=libseccomp-dev
  # TAP ports with io: uring (native/uring.c) and the C relay's -u (scripts/relay.c).
  [/usr/include/liburing.h]=liburing-dev
)
if [ "$mode" != core ]; then
  want+=(
    [iperf3]=iperf3 [trafgen]=netsniff-ng [hping3]=hping3 [socat]=socat
    [/usr/lib/python3/dist-packages/scapy/__init__.py]=python3-scapy
  )
  # The bench's cni scenario and the CNI tests: the reference plugins (host-local, bridge).
  want+=([/usr/lib/cni/bridge]=containernetworking-plugins)
  # BIRD 2: the BGP peer of the calico-bgp labs' tests and of the bench's bgp scenario.
  want+=([bird]=bird2 [birdc]=bird2)
fi
if [ "$mode" = bench ]; then
  # The lab scenario's reference: Mininet on Linux bridges (its lxbr switch needs brctl).
  want+=([mn]=mininet [brctl]=bridge-utils)
fi
if [ "$mode" != core ]; then
  # The switch scenario's Open vSwitch rows (--ovs) and their smoke test: the bench starts its
  # own ovsdb-server and ovs-vswitchd in a namespace; AF_XDP ports need libxdp, a dependency.
  # On a machine run by systemd, installing the package also starts Debian's own service.
  want+=([ovs-vswitchd]=openvswitch-switch)
fi
if [ "$mode" = test ]; then
  # The offload core's libFuzzer harnesses (npm run fuzz:native; a short run is in the suite).
  want+=([clang]=clang)
  # The CNI tests: the reference plugins (host-local, bridge), podman on runc, a static busybox
  # for the container's root filesystem.
  want+=([/usr/lib/cni/host-local]=containernetworking-plugins [podman]=podman [runc]=runc [/bin/busybox]=busybox-static)
  # BIRD 2, the BGP peer of the calico-bgp labs' tests.
  want+=([bird]=bird2 [birdc]=bird2)
  # The flannel-etcd lab's test drives a real etcd cluster and etcdctl (lab up installs them too).
  want+=([etcd]=etcd-server [etcdctl]=etcd-client)
  # lab graph's PNG output and its test's SVG check; the metrics test's promtool and Prometheus.
  want+=([rsvg-convert]=librsvg2-bin [promtool]=prometheus [prometheus]=prometheus)
fi
missing=()
# libFuzzer and the sanitizer runtimes of the default clang (Debian 12: libclang-rt-14-dev).
if [ "$mode" = test ] && ! compgen -G "/usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a" >/dev/null; then
  missing+=(libclang-rt-dev)
fi
for what in "${!want[@]}"; do
  if [[ "$what" == /* ]]; then
    [ -e "$what" ] || missing+=("${want[$what]}")
  else
    # Some live in /usr/sbin (nft, trafgen, hping3), which a normal user's PATH on Debian lacks.
    PATH="$PATH:/usr/sbin:/sbin" command -v "$what" >/dev/null 2>&1 || missing+=("${want[$what]}")
  fi
done

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
  say "building the native addon"
  npm run --silent install
fi

# TypeScript (incremental: a no-op when nothing changed).
npx --no-install tsc -p tsconfig.json
bash scripts/link-bin.sh
