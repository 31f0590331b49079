#!/usr/bin/env bash
# Runs every command shown in README.md and docs/*.md that needs no vendor
# credentials, exactly as written, and fails on the first one that fails.
#
#   bash scripts/check-doc-commands.sh           # as documented (release builds)
#   bash scripts/check-doc-commands.sh --debug   # drops --release (faster to compile in CI)
#
# Which commands run: every line of a ```sh block that is a `cargo run` with
# `--sandbox` or `--help`, or runs the quickstart, plus the `echo`/`mkdir`/
# `printf` lines that prepare their input files. Everything else (commands
# that need real credentials, `export`s, the test suite and the benchmarks,
# which CI and docs/benchmarks.md cover) is listed as skipped. After that the
# quickstart runs once more and must report an incremental sync into the
# database the first run left.
#
# It takes about 1.5 minutes once the examples are built (25 commands, most of
# the time is cargo's own start-up per command); --debug takes about as long
# when the debug test build already exists.
#
# Commands run in a fresh directory under target/ (inside the workspace, so
# `cargo run` finds it), so relative paths in the docs land there.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

release=1
case "${1:-}" in
  --debug) release=0 ;;
  "") ;;
  *) echo "usage: $0 [--debug]" >&2; exit 2 ;;
esac

work=$(mktemp -d "$root/target/doc-commands.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The ```sh blocks of the docs, one command per line (continuations joined).
extract() {
  awk '
    /^```sh[[:space:]]*$/ { inside = 1; next }
    /^```/ { inside = 0; next }
    inside {
      line = $0
      if (line ~ /\\$/) { sub(/\\$/, "", line); pending = pending line; next }
      print pending line
      pending = ""
    }
  ' "$@"
}

runnable() {
  local cmd=$1
  case "$cmd" in
    "echo "*|"mkdir "*|"printf "*) return 0 ;;
    "cargo run "*"--example quickstart"*) return 0 ;;
    "cargo run "*"--sandbox"*|"cargo run "*"--help"*) return 0 ;;
  esac
  return 1
}

mapfile -t all < <(extract README.md docs/*.md | sed -e 's/[[:space:]]*$//' | grep -v '^[[:space:]]*$' | awk '!seen[$0]++')

ran=0
skipped=()
started=$SECONDS
for cmd in "${all[@]}"; do
  if ! runnable "$cmd"; then
    skipped+=("$cmd")
    continue
  fi
  actual=$cmd
  if [ "$release" = 0 ]; then
    actual=${actual//cargo run --release/cargo run}
  fi
  printf '\n==> %s\n' "$actual"
  if ! (cd "$work" && bash -c "$actual" </dev/null >"$work/.out" 2>&1); then
    cat "$work/.out"
    echo "FAILED: $actual" >&2
    exit 1
  fi
  tail -n 3 "$work/.out"
  ran=$((ran + 1))
done

# The quickstart again: it must sync incrementally into the database the
# first run left in the same directory.
again="cargo run --release --example quickstart"
[ "$release" = 0 ] && again="cargo run --example quickstart"
printf '\n==> %s (second run)\n' "$again"
if ! (cd "$work" && $again </dev/null >"$work/.out" 2>&1); then
  cat "$work/.out"
  echo "FAILED: second quickstart run" >&2
  exit 1
fi
if ! grep -q "dap sync .*incremental" "$work/.out" || ! grep -q "sandbox catch-up" "$work/.out"; then
  cat "$work/.out"
  echo "FAILED: the second quickstart run did not sync incrementally" >&2
  exit 1
fi
tail -n 3 "$work/.out"
ran=$((ran + 1))

printf '\nskipped (need vendor credentials, or are the test suite/benchmarks):\n'
printf '  %s\n' "${skipped[@]}"
printf '\n%d documented commands ran in %ds\n' "$ran" $((SECONDS - started))
