#!/usr/bin/env bash
# One posko backup onto the USB stick; run by posko-backup.service as the user posko.
#
# Writes $POSKO_BACKUP_ROOT/<post>/<UTC time>/ with `posko backup <dir> --data-dir <data>`, then
# keeps the newest $POSKO_BACKUP_KEEP backups of this post (never deleting the one just made: a Pi
# without a clock may have named it in the past). Restore with `posko restore <dir>`.
set -euo pipefail

data_dir=${POSKO_DATA_DIR:-/var/lib/posko/data}
backup_root=${POSKO_BACKUP_ROOT:-/media/posko-usb/posko-backup}
keep=${POSKO_BACKUP_KEEP:-14}
post=${POSKO_POST_ID:-DEMO}
app=${POSKO_APP_DIR:-/opt/posko}
node=${POSKO_NODE:-/usr/local/bin/node}

if [[ ! $keep =~ ^[0-9]+$ ]] || ((keep < 1)); then
  echo "posko-backup: POSKO_BACKUP_KEEP must be a whole number >= 1, not '$keep'" >&2
  exit 2
fi

post_dir=$backup_root/$post
# The first access mounts the stick (automount); without a stick it fails here, plainly.
if ! mkdir -p -- "$post_dir" 2>/dev/null; then
  echo "posko-backup: cannot write to $post_dir: is the USB stick (label POSKO-USB) plugged in? No backup made." >&2
  exit 1
fi

stamp=$(date -u +%Y%m%dT%H%M%SZ)
target=$post_dir/$stamp
n=1
while [[ -e $target ]]; do
  n=$((n + 1))
  target=$post_dir/$stamp-$n
done

echo "posko-backup: backing up $data_dir to $target"
# `--import tsx` is resolved from the working directory.
cd -- "$app"
"$node" --import tsx "$app/src/main.ts" backup "$target" --data-dir "$data_dir"
sync
echo "posko-backup: done: $target"

# Prune: the newest $keep by name (UTC time stamps sort in time order), the new one always kept.
mapfile -t old < <(find "$post_dir" -mindepth 1 -maxdepth 1 -type d -name '[0-9]*T[0-9]*Z*' ! -path "$target" -printf '%f\n' | sort -r)
if ((${#old[@]} > keep - 1)); then
  for name in "${old[@]:keep-1}"; do
    echo "posko-backup: removing old backup $post_dir/$name"
    rm -rf -- "${post_dir:?}/$name"
  done
  sync
fi
