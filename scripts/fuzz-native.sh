#!/usr/bin/env bash
# npm run fuzz:native [-- -max_total_time=N] [-- TARGET…]
#
# libFuzzer harnesses (native/fuzz/*.c) for the offload core (native/offload_core.c,
# built without N-API), under AddressSanitizer and UndefinedBehaviorSanitizer (every
# report fatal): gso_segment, csum_complete, gro_coalesce, gro_frames. Each runs for
# max_total_time seconds (default 60); any crash, sanitizer report or broken contract
# fails the run (non-zero exit) and leaves the input in native/fuzz/out/ (a file
# given to the harness binary alone replays it: native/fuzz/out/TARGET FILE).
# Arguments starting with '-' go to libFuzzer; others name the targets to run.
# Corpora grow in native/fuzz/out/corpus-TARGET (not in git; FUZZ_NATIVE_OUT names
# another directory): a later run starts from what an earlier one found.
set -euo pipefail
cd "$(dirname "$0")/.."

targets=()
flags=()
for a in "$@"; do
  case "$a" in
    -*) flags+=("$a") ;;
    gso_segment|csum_complete|gro_coalesce|gro_frames) targets+=("$a") ;;
    *) echo "fuzz-native: unknown target '$a' (gso_segment, csum_complete, gro_coalesce, gro_frames)" >&2; exit 2 ;;
  esac
done
[ "${#targets[@]}" -gt 0 ] || targets=(gso_segment csum_complete gro_coalesce gro_frames)
have_time=0
for f in "${flags[@]+"${flags[@]}"}"; do [[ "$f" == -max_total_time=* ]] && have_time=1; done
[ "$have_time" = 1 ] || flags+=(-max_total_time=60)

command -v clang >/dev/null || { echo "fuzz-native: clang is missing (bash scripts/setup.sh --test installs it)" >&2; exit 1; }
out=${FUZZ_NATIVE_OUT:-native/fuzz/out}
mkdir -p "$out"
export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:allocator_may_return_null=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
status=0
for t in "${targets[@]}"; do
  bin="$out/$t"
  clang -g -O1 -std=c11 -Wall -Wextra -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -o "$bin" "native/fuzz/$t.c" native/offload_core.c
  mkdir -p "$out/corpus-$t"
  echo "fuzz-native: $t ${flags[*]}"
  if ! "$bin" -max_len=9000 -print_final_stats=1 -artifact_prefix="$out/$t-" "${flags[@]}" "$out/corpus-$t" 2>"$out/$t.log"; then
    status=1
    echo "fuzz-native: $t FAILED — see $out/$t.log and the crash input $out/$t-*" >&2
    grep -m 20 -E "ERROR|contract broken|runtime error|SUMMARY|Test unit written" "$out/$t.log" >&2 || true
  fi
  # The last status line (execs, coverage: cov = edges, ft = features, corpus) and the peak memory.
  summary=$(grep -E "^#[0-9]+[[:space:]]+DONE" "$out/$t.log" | tail -1 | tr -s '[:space:]' ' ')
  rss=$(grep -E "^stat::peak_rss_mb" "$out/$t.log" | tr -s '[:space:]' ' ')
  echo "fuzz-native: $t: ${summary:-no summary (see $out/$t.log)} ${rss}"
done
exit $status
