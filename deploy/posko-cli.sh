#!/usr/bin/env bash
# `posko` on an installed Pi: installed as /usr/local/bin/posko by deploy/install.sh.
#
#   sudo posko devices add "Gudang pintu 1"
#   sudo posko devices list
#
# Runs /opt/posko's command line as the user posko with the gateway's settings from
# /etc/default/posko (post id, data directory), so what it writes (the database, Mosquitto's
# password and ACL files) belongs to posko and matches the running gateway. Any posko command
# and option works; options given here win over /etc/default/posko.
set -euo pipefail

app=${POSKO_APP_DIR:-/opt/posko}
node=${POSKO_NODE:-/usr/local/bin/node}

if [[ -r /etc/default/posko ]]; then
  set -a
  # shellcheck source=/dev/null
  . /etc/default/posko
  set +a
elif [[ -e /etc/default/posko ]]; then
  echo "posko: cannot read /etc/default/posko; run it with sudo: sudo posko $*" >&2
  exit 1
fi
export POSKO_DATA_DIR=${POSKO_DATA_DIR:-/var/lib/posko/data}
umask 027

# bin/posko.js loads tsx itself, so this works from any directory.
cmd=("$node" "$app/bin/posko.js" "$@")
if [[ $(id -u) -eq 0 ]]; then
  exec runuser -u posko -- "${cmd[@]}"
elif [[ $(id -un) == posko ]]; then
  exec "${cmd[@]}"
else
  echo "posko: run it with sudo (it runs as the user posko): sudo posko $*" >&2
  exit 1
fi
