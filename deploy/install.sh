#!/usr/bin/env bash
# Installs a posko gateway on Raspberry Pi OS 64-bit (Debian 12 "bookworm") or any Debian machine.
#
#   sudo ./deploy/install.sh --post-id KKR-KBG
#   sudo ./deploy/install.sh --post-id KKR-KBG --hq-url mqtts://hq.example.org:8883 --hq-user kbg --hq-password '…'
#   ./deploy/install.sh --post-id KKR-KBG --prefix /tmp/pi --dry-run     # see what it would do
#
# What it does: installs Node.js 20, Mosquitto and git; creates the system user posko and
# /var/lib/posko/data; copies this project to /opt/posko and runs `npm ci --omit=dev` there;
# writes /etc/default/posko; installs the systemd units, Mosquitto's configuration, a journald
# size limit and the USB backup; enables and starts everything.
#
# Needs the internet: apt, npm and (on bookworm, whose own Node.js is 18) the official Node.js 20
# tarball from nodejs.org, checked against its SHASUMS256.txt. Offline: --node-tarball FILE.
#
# Run it again at any time (to update posko, or change a setting): it is idempotent, keeps the
# data and the settings it is not given, and keeps your own lines in /etc/default/posko.
#
# --prefix DIR writes every file under DIR instead of / (DIR/etc/default/posko,
# DIR/etc/systemd/system/…), and --dry-run does the same in a temporary directory when no
# --prefix is given; both print the commands they would run (apt-get, useradd, npm, systemctl,
# chown…) instead of running them.
set -euo pipefail

readonly APP_DIR=/opt/posko
readonly STATE_DIR=/var/lib/posko
readonly DATA_DIR=/var/lib/posko/data
readonly NODE_BIN=/usr/local/bin/node
readonly USB_MOUNT=/media/posko-usb
readonly NODE_MAJOR=20

usage() {
  cat <<'EOF'
Usage: install.sh [options]

  --post-id ID         this post's id, e.g. KKR-KBG (A-Z, 0-9, -; at most 16). Needed the first
                       time; later runs keep the one in /etc/default/posko.
  --role post|hq       default: post (or what /etc/default/posko says)
  --hq-url URL         HQ's broker for the Mosquitto bridge: mqtts://host[:8883] (TLS) or
                       mqtt://host[:1883]; "none" removes the bridge
  --hq-user NAME       the account HQ gave this post on its broker (optional)
  --hq-password PW     its password (optional; kept in /etc/mosquitto/conf.d/posko.conf, mode 0640)
  --hq-cafile FILE     CA certificate of HQ's broker (default: the system's CA list)
  --broker mosquitto|embedded
                       scanners connect to Mosquitto (default) or to the gateway's own broker
  --usb-label LABEL    label of the backup USB stick (default POSKO-USB)
  --no-usb             do not add the USB stick to /etc/fstab
  --node-tarball FILE  install Node.js from this node-v20.*-linux-*.tar.xz (no download)
  --prefix DIR         write files under DIR and only print the commands
  --dry-run            print the commands instead of running them (files go to --prefix, or a
                       temporary directory)
  -h, --help           this help
EOF
}

die() {
  echo "install.sh: $*" >&2
  exit 2
}

say() {
  printf '==> %s\n' "$*"
}

# ---------------------------------------------------------------------------------------------
# Arguments

post_id=''
role=''
hq_url=''
hq_user=''
hq_password=''
hq_cafile=''
broker=''
usb_label=POSKO-USB
usb=1
node_tarball=''
prefix=''
dry_run=0

need_value() {
  [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value (see --help)"
}

while [[ $# -gt 0 ]]; do
  arg=$1
  if [[ $arg == --*=* ]]; then
    set -- "${arg%%=*}" "${arg#*=}" "${@:2}"
    arg=$1
  fi
  case $arg in
    --post-id) need_value "$@"; post_id=$2; shift 2 ;;
    --role) need_value "$@"; role=$2; shift 2 ;;
    --hq-url) need_value "$@"; hq_url=$2; shift 2 ;;
    --hq-user) need_value "$@"; hq_user=$2; shift 2 ;;
    --hq-password) need_value "$@"; hq_password=$2; shift 2 ;;
    --hq-cafile) need_value "$@"; hq_cafile=$2; shift 2 ;;
    --broker) need_value "$@"; broker=$2; shift 2 ;;
    --usb-label) need_value "$@"; usb_label=$2; shift 2 ;;
    --no-usb) usb=0; shift ;;
    --node-tarball) need_value "$@"; node_tarball=$2; shift 2 ;;
    --prefix) need_value "$@"; prefix=$2; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $arg" ;;
  esac
done

# Where files go, and whether commands run.
if [[ -n $prefix ]]; then
  mkdir -p -- "$prefix"
  ROOT=$(cd -- "$prefix" && pwd)
elif ((dry_run)); then
  ROOT=$(mktemp -d "${TMPDIR:-/tmp}/posko-install.XXXXXX")
else
  ROOT=/
fi
ROOT=${ROOT%/}
# PLAN=1: print commands, do not run them (dry run, or files staged under a prefix).
if ((dry_run)) || [[ -n $ROOT ]]; then PLAN=1; else PLAN=0; fi
readonly ROOT PLAN

# A path inside the target root.
r() {
  printf '%s%s' "$ROOT" "$1"
}

# Runs a command, or prints it in plan mode.
run() {
  if ((PLAN)); then
    printf '+'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}

# Writes stdin to a file under the root (atomically, with a mode), creating its directory.
put() {
  local dest mode tmp
  dest=$(r "$1")
  mode=$2
  mkdir -p -- "$(dirname -- "$dest")"
  tmp=$(mktemp "$dest.XXXXXX")
  cat >"$tmp"
  chmod "$mode" "$tmp"
  mv -f -- "$tmp" "$dest"
  echo "    wrote $1"
}

# Installs a file of this project under the root.
put_file() {
  put "$2" "$3" <"$SRC/$1"
}

# KEY=value from an environment file (the last one; quotes removed), or nothing.
get_kv() {
  local file=$1 key=$2 v
  [[ -f $file ]] || return 0
  v=$(sed -n "s/^[[:space:]]*$key=//p" "$file" | tail -n 1)
  v=${v%\"}
  v=${v#\"}
  v=${v%\'}
  v=${v#\'}
  printf '%s' "$v"
}

# A bridge directive's value from the installed Mosquitto file (when not commented out).
get_conf() {
  local file=$1 key=$2
  [[ -f $file ]] || return 0
  sed -n "s/^${key}[[:space:]]\{1,\}//p" "$file" | tail -n 1
}

SRC=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
readonly SRC
[[ -f $SRC/package.json && -f $SRC/src/main.ts && -f $SRC/deploy/posko.service ]] ||
  die "run me from a posko checkout (deploy/install.sh); $SRC does not look like one"

if ((!PLAN)) && [[ $(id -u) -ne 0 ]]; then
  die "run it as root: sudo $0 $*  (or look first: $0 --dry-run …)"
fi

# ---------------------------------------------------------------------------------------------
# Settings: given ones win, else what /etc/default/posko already says, else defaults.

defaults_file=$(r /etc/default/posko)
conf_file=$(r /etc/mosquitto/conf.d/posko.conf)

[[ -n $post_id ]] || post_id=$(get_kv "$defaults_file" POSKO_POST_ID)
[[ -n $post_id ]] || die "--post-id is needed the first time (e.g. --post-id KKR-KBG)"
[[ $post_id =~ ^[A-Z0-9][A-Z0-9-]{0,15}$ ]] ||
  die "--post-id '$post_id': use 1-16 of A-Z, 0-9 and -, starting with a letter or digit (e.g. KKR-KBG)"

[[ -n $role ]] || role=$(get_kv "$defaults_file" POSKO_ROLE)
[[ -n $role ]] || role=post
[[ $role == post || $role == hq ]] || die "--role must be post or hq, not '$role'"

if [[ -z $broker ]]; then
  if [[ -f $defaults_file ]] && grep -q '^POSKO_MQTT_URL=$' "$defaults_file"; then broker=embedded; else broker=mosquitto; fi
fi
[[ $broker == mosquitto || $broker == embedded ]] || die "--broker must be mosquitto or embedded, not '$broker'"

[[ -n $hq_url ]] || hq_url=$(get_kv "$defaults_file" POSKO_HQ_URL)
[[ $hq_url == none ]] && hq_url=''
[[ -n $hq_user ]] || hq_user=$(get_conf "$conf_file" remote_username)
[[ -n $hq_password ]] || hq_password=$(get_conf "$conf_file" remote_password)
if [[ -z $hq_cafile ]]; then
  hq_cafile=$(get_conf "$conf_file" bridge_cafile)
  [[ -n $hq_cafile ]] || hq_cafile=/etc/ssl/certs/ca-certificates.crt
fi

hq_host='' hq_port='' hq_tls=1
if [[ -n $hq_url ]]; then
  [[ $broker == mosquitto ]] || die "--hq-url needs --broker mosquitto (the bridge to HQ is Mosquitto's)"
  [[ $role == post ]] || die "--hq-url is for a post (--role post): it bridges the post's broker to HQ's"
  re='^((mqtts|mqtt|ssl|tls|tcp|https|http)://)?([A-Za-z0-9.-]+)(:([0-9]{1,5}))?/?$'
  [[ $hq_url =~ $re ]] || die "--hq-url '$hq_url': use mqtts://host[:port] (or mqtt://host[:port])"
  case ${BASH_REMATCH[2]} in
    mqtt | tcp | http) hq_tls=0 ;;
    *) hq_tls=1 ;;
  esac
  hq_host=${BASH_REMATCH[3]}
  hq_port=${BASH_REMATCH[5]}
  if [[ -z $hq_port ]]; then
    if ((hq_tls)); then hq_port=8883; else hq_port=1883; fi
  fi
  ((hq_tls)) || echo "install.sh: warning: the bridge to $hq_host:$hq_port is not encrypted (mqtt://); use mqtts:// over the internet" >&2
  [[ $hq_user != *[[:space:]]* && $hq_password != *[[:space:]]* ]] || die "--hq-user and --hq-password cannot contain spaces"
fi

if ((PLAN)); then
  say "plan only: files are written under $ROOT, commands are printed, not run"
fi
say "posko $role $post_id (scanners: $broker broker${hq_host:+; bridge to HQ $hq_host:$hq_port})"

# ---------------------------------------------------------------------------------------------
# Packages and Node.js 20

say "packages"
packages=(git rsync curl ca-certificates xz-utils gcc libc6-dev)
[[ $broker == mosquitto ]] && packages+=(mosquitto mosquitto-clients)
run apt-get update
run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${packages[@]}"

node_major() {
  local v
  v=$("$1" --version 2>/dev/null) || return 1
  v=${v#v}
  printf '%s' "${v%%.*}"
}

# The userland's architecture, not the kernel's: a 64-bit kernel may run a 32-bit (armhf) system.
node_arch() {
  local a
  a=$(dpkg --print-architecture 2>/dev/null || uname -m)
  case $a in
    arm64 | aarch64) echo arm64 ;;
    armhf | armv7l | armv8l) echo armv7l ;;
    amd64 | x86_64) echo x64 ;;
    *) die "no Node.js build for this system ($a)" ;;
  esac
}

install_node_tarball() {
  local arch tmp file base version
  arch=$(node_arch)
  if [[ -n $node_tarball ]]; then
    [[ -f $node_tarball ]] || die "--node-tarball $node_tarball: no such file"
    file=$(basename -- "$node_tarball")
    [[ $file =~ ^node-v${NODE_MAJOR}\.[0-9.]+-linux-[a-z0-9]+\.tar\.xz$ ]] || die "--node-tarball: expected node-v${NODE_MAJOR}.x.y-linux-$arch.tar.xz, got $file"
    version=${file%.tar.xz}
    run mkdir -p /usr/local/lib/nodejs
    run tar -xJf "$node_tarball" -C /usr/local/lib/nodejs
  else
    base=https://nodejs.org/dist/latest-v${NODE_MAJOR}.x
    if ((PLAN)); then
      file="node-v${NODE_MAJOR}.x.y-linux-$arch.tar.xz"
      run curl -fsSL -o /tmp/SHASUMS256.txt "$base/SHASUMS256.txt"
      run curl -fsSL -o "/tmp/$file" "$base/$file"
      printf '+ (cd /tmp && grep " %s$" SHASUMS256.txt | sha256sum -c -)\n' "$file"
      version=${file%.tar.xz}
      run mkdir -p /usr/local/lib/nodejs
      run tar -xJf "/tmp/$file" -C /usr/local/lib/nodejs
    else
      tmp=$(mktemp -d)
      # shellcheck disable=SC2064  # expand $tmp now
      trap "rm -rf -- '$tmp'" EXIT
      curl -fsSL --retry 3 -o "$tmp/SHASUMS256.txt" "$base/SHASUMS256.txt"
      file=$(grep -oE "node-v${NODE_MAJOR}\.[0-9]+\.[0-9]+-linux-$arch\.tar\.xz" "$tmp/SHASUMS256.txt" | head -n 1)
      [[ -n $file ]] || die "no linux-$arch tarball listed in $base/SHASUMS256.txt"
      say "downloading $base/$file"
      curl -fsSL --retry 3 -o "$tmp/$file" "$base/$file"
      (cd "$tmp" && grep " $file\$" SHASUMS256.txt | sha256sum -c --status -) || die "$file: checksum mismatch"
      version=${file%.tar.xz}
      mkdir -p /usr/local/lib/nodejs
      tar -xJf "$tmp/$file" -C /usr/local/lib/nodejs
    fi
  fi
  run ln -sfn "/usr/local/lib/nodejs/$version" /usr/local/lib/nodejs/current
  local b
  for b in node npm npx; do
    run ln -sfn "/usr/local/lib/nodejs/current/bin/$b" "/usr/local/bin/$b"
  done
}

say "Node.js $NODE_MAJOR at $NODE_BIN"
if [[ -x $(r $NODE_BIN) ]] && [[ $(node_major "$(r $NODE_BIN)" || true) -ge $NODE_MAJOR ]]; then
  echo "    $NODE_BIN is $("$(r $NODE_BIN)" --version)"
elif ((!PLAN)) && existing=$(command -v node) && [[ $(node_major "$existing" || true) -ge $NODE_MAJOR ]]; then
  # Already there (e.g. Debian 13's nodejs, or NodeSource): the units use $NODE_BIN.
  run ln -sfn "$(readlink -f "$existing")" $NODE_BIN
  existing_npm=$(command -v npm || true)
  [[ -n $existing_npm ]] && run ln -sfn "$(readlink -f "$existing_npm")" /usr/local/bin/npm
else
  # Debian 12's nodejs is 18: the official build, under /usr/local (apt's /usr/bin/node untouched).
  install_node_tarball
fi
if ((!PLAN)); then
  v=$($NODE_BIN --version) || die "$NODE_BIN does not run"
  (($(node_major $NODE_BIN) >= NODE_MAJOR)) || die "$NODE_BIN is $v; need Node.js $NODE_MAJOR or newer"
  echo "    node --version: $v"
fi
export PATH=/usr/local/bin:$PATH

# ---------------------------------------------------------------------------------------------
# User and directories

say "user posko and $DATA_DIR"
if ((PLAN)) || ! getent passwd posko >/dev/null; then
  if ((PLAN)); then echo "    (only when the user posko does not exist yet)"; fi
  run useradd --system --user-group --home-dir $STATE_DIR --no-create-home --shell /usr/sbin/nologin \
    --comment 'posko gateway' posko
fi
# /var/lib/posko and data: others may pass through (Mosquitto needs to reach data/mosquitto) but
# not list them; the database is 0640 (UMask=0027 in posko.service).
mkdir -p -- "$(r $DATA_DIR/mosquitto)" "$(r /etc/posko)"
chmod 0711 "$(r $STATE_DIR)" "$(r $DATA_DIR)"
chmod 0750 "$(r /etc/posko)"
run chown posko:posko $STATE_DIR $DATA_DIR
run chown root:posko /etc/posko
if [[ $broker == mosquitto ]]; then
  # Files posko writes here inherit the group mosquitto (setgid), mode 0640: Mosquitto reads them.
  run chown posko:mosquitto $DATA_DIR/mosquitto
  chmod 2750 "$(r $DATA_DIR/mosquitto)"
else
  run chown posko:posko $DATA_DIR/mosquitto
  chmod 0750 "$(r $DATA_DIR/mosquitto)"
fi

# ---------------------------------------------------------------------------------------------
# The program

say "posko in $APP_DIR"
if [[ $SRC == "$(r $APP_DIR)" ]]; then
  echo "    already running from $APP_DIR: not copied"
else
  run mkdir -p $APP_DIR
  run rsync -a --delete --chown=root:root --chmod=D0755,F0644 \
    --exclude=/.git/ --exclude=/node_modules/ --exclude=/data/ --exclude=/bench/results/ \
    --exclude=/firmware-bridge/bridge/evgrab \
    "$SRC/" "$APP_DIR/"
  run chmod 0755 $APP_DIR/bin/posko.js $APP_DIR/deploy/install.sh $APP_DIR/deploy/posko-backup.sh $APP_DIR/deploy/posko-cli.sh
fi
run env -C $APP_DIR npm ci --omit=dev --no-audit --no-fund
# Keyboard-wedge scanners: the bridge's tiny helper for exclusive access (see firmware-bridge/).
if [[ -f $SRC/firmware-bridge/bridge/evgrab.c ]]; then
  run cc -O2 -Wall -o $APP_DIR/firmware-bridge/bridge/evgrab $APP_DIR/firmware-bridge/bridge/evgrab.c
fi
put /usr/local/bin/posko 0755 <"$SRC/deploy/posko-cli.sh"

# ---------------------------------------------------------------------------------------------
# /etc/default/posko: written whole the first time; afterwards only the lines install.sh manages
# are updated, the rest is kept.

say "settings in /etc/default/posko"
if [[ $broker == mosquitto ]]; then mqtt_url=mqtt://127.0.0.1:1883; else mqtt_url=''; fi
if [[ ! -f $defaults_file ]]; then
  put /etc/default/posko 0640 <<EOF
# posko settings, read by posko.service, posko-backup.service and \`sudo posko …\`.
# Every setting is in /opt/posko/README.md ("Configuration"). After a change:
#   sudo systemctl restart posko
# deploy/install.sh updates the POSKO_POST_ID, POSKO_ROLE, POSKO_DATA_DIR, POSKO_MQTT_URL and
# POSKO_HQ_URL lines and keeps everything else.
POSKO_POST_ID=$post_id
POSKO_ROLE=$role
# Changing it also needs /etc/mosquitto/conf.d/posko.conf and the units changed: leave it.
POSKO_DATA_DIR=$DATA_DIR
# The broker scanners connect to: the local Mosquitto. Empty: the gateway's own embedded broker.
POSKO_MQTT_URL=$mqtt_url
# HQ (BPBD): used for Mosquitto's bridge to HQ (install.sh --hq-url).
POSKO_HQ_URL=$hq_url
#POSKO_HTTP_PORT=8080
#POSKO_LOG_LEVEL=info
# Backups kept on the USB stick (posko-backup.timer).
#POSKO_BACKUP_KEEP=14
EOF
else
  tmp=$(mktemp)
  cp -- "$defaults_file" "$tmp"
  for kv in "POSKO_POST_ID=$post_id" "POSKO_ROLE=$role" "POSKO_DATA_DIR=$DATA_DIR" \
    "POSKO_MQTT_URL=$mqtt_url" "POSKO_HQ_URL=$hq_url"; do
    key=${kv%%=*}
    if grep -q "^$key=" "$tmp"; then
      awk -v key="$key" -v line="$kv" 'index($0, key "=") == 1 { print line; next } { print }' "$tmp" >"$tmp.new"
      mv -f -- "$tmp.new" "$tmp"
    else
      printf '%s\n' "$kv" >>"$tmp"
    fi
  done
  put /etc/default/posko 0640 <"$tmp"
  rm -f -- "$tmp"
fi
run chown root:posko /etc/default/posko
put /etc/posko/bridge.env.example 0644 <"$SRC/deploy/bridge.env.example"

# ---------------------------------------------------------------------------------------------
# Mosquitto

if [[ $broker == mosquitto ]]; then
  say "Mosquitto: /etc/mosquitto/conf.d/posko.conf"
  awk -v host="$hq_host" -v port="$hq_port" -v tls="$hq_tls" -v post="$post_id" \
    -v user="$hq_user" -v pw="$hq_password" -v cafile="$hq_cafile" '
    /^# >>> bridge/ { inblock = 1; print; next }
    /^# <<< bridge/ { inblock = 0; print; next }
    inblock && host != "" && /^#[a-z_]+( |$)/ {
      d = substr($1, 2)
      if (d == "address") { print "address " host ":" port; next }
      if (d == "remote_clientid") { print "remote_clientid posko-bridge-" post; next }
      if (d == "remote_username") { if (user != "") print "remote_username " user; else print; next }
      if (d == "remote_password") { if (pw != "") print "remote_password " pw; else print; next }
      if (d == "bridge_cafile") { if (tls == 1) print "bridge_cafile " cafile; else print; next }
      print substr($0, 2)
      next
    }
    { print }
  ' "$SRC/deploy/mosquitto/posko.conf" | put /etc/mosquitto/conf.d/posko.conf 0640
  # It may hold HQ's password: readable by Mosquitto (which rereads it as the user mosquitto).
  run chown root:mosquitto /etc/mosquitto/conf.d/posko.conf
  main_conf=$(r /etc/mosquitto/mosquitto.conf)
  if ((!PLAN)) && ! grep -qE '^include_dir[[:space:]]+/etc/mosquitto/conf.d' "$main_conf"; then
    echo "install.sh: warning: $main_conf has no 'include_dir /etc/mosquitto/conf.d': posko.conf will not be read" >&2
  fi
else
  if [[ -f $conf_file ]]; then
    rm -f -- "$conf_file"
    echo "    removed /etc/mosquitto/conf.d/posko.conf (embedded broker)"
  fi
fi

# ---------------------------------------------------------------------------------------------
# Logs: the journal, limited for an SD card. Mosquitto's log file: logrotate, unless the mosquitto
# package rotates it already (Debian's does; logrotate refuses two rules for one file).

say "logs"
put /etc/systemd/journald.conf.d/posko.conf 0644 <"$SRC/deploy/journald/posko.conf"
if [[ -f $(r /etc/logrotate.d/mosquitto) ]]; then
  echo "    Mosquitto's log is rotated by /etc/logrotate.d/mosquitto (its package): no rule added"
  rm -f -- "$(r /etc/logrotate.d/posko)"
else
  put_file deploy/logrotate/posko /etc/logrotate.d/posko 0644
fi

# ---------------------------------------------------------------------------------------------
# systemd units

say "systemd units"
units=(posko.service posko-bridge@.service posko-backup.service posko-backup.timer
  posko-mosquitto-reload.path posko-mosquitto-reload.service)
for u in "${units[@]}"; do
  put_file "deploy/$u" "/etc/systemd/system/$u" 0644
done

# ---------------------------------------------------------------------------------------------
# The USB stick for backups: mounted at /media/posko-usb on first access, unmounted when idle.

if ((usb)); then
  say "USB stick $usb_label for backups at $USB_MOUNT"
  [[ $usb_label =~ ^[A-Za-z0-9_-]{1,16}$ ]] || die "--usb-label '$usb_label': letters, digits, - and _ only"
  mkdir -p -- "$(r $USB_MOUNT)"
  fstab=$(r /etc/fstab)
  line="LABEL=$usb_label $USB_MOUNT auto nofail,x-systemd.automount,x-systemd.idle-timeout=60,x-systemd.device-timeout=10s,uid=posko,gid=posko,umask=0077 0 0"
  touch -- "$fstab"
  if grep -qE "^[^#]*[[:space:]]${USB_MOUNT}[[:space:]]" "$fstab"; then
    if ! grep -qxF "$line" "$fstab"; then
      echo "    /etc/fstab already has a line for $USB_MOUNT: kept as it is"
      usb=0 # not ours: no automount unit to start
    fi
  else
    { cat -- "$fstab"; printf '# posko backups (deploy/install.sh): a FAT32 or exFAT stick labelled %s\n%s\n' "$usb_label" "$line"; } |
      put /etc/fstab 0644
  fi
fi

# ---------------------------------------------------------------------------------------------
# Mosquitto's password and ACL files, before Mosquitto starts (it refuses to start without them).

say "Mosquitto password and ACL files in $DATA_DIR/mosquitto"
# shellcheck disable=SC2016  # $0 is for the inner sh
run runuser -u posko -- env -C $APP_DIR POSKO_POST_ID="$post_id" POSKO_DATA_DIR=$DATA_DIR \
  sh -c 'umask 027 && exec "$0" --import tsx src/main.ts mosquitto-files' $NODE_BIN

# ---------------------------------------------------------------------------------------------
# Start

say "services"
run systemctl daemon-reload
run systemctl restart systemd-journald.service
if [[ $broker == mosquitto ]]; then
  run systemctl unmask mosquitto.service
  run systemctl enable mosquitto.service
  run systemctl restart mosquitto.service
  run systemctl enable --now posko-mosquitto-reload.path
else
  run systemctl disable --now posko-mosquitto-reload.path
  if ((PLAN)) || systemctl cat mosquitto.service >/dev/null 2>&1; then
    # The embedded broker needs port 1883, and posko.service Wants= mosquitto.
    run systemctl disable --now mosquitto.service
    run systemctl mask mosquitto.service
  fi
fi
if ((usb)); then
  # The automount unit systemd made from the fstab line (systemd-escape -p --suffix=automount).
  run systemctl start 'media-posko\x2dusb.automount'
fi
run systemctl enable posko.service
run systemctl restart posko.service
# Scanner bridges already set up get the new code too.
run systemctl try-restart 'posko-bridge@*.service'
run systemctl enable --now posko-backup.timer

http_port=$(get_kv "$defaults_file" POSKO_HTTP_PORT)
http_port=${http_port:-8080}
if ((!PLAN)); then
  say "waiting for posko on port $http_port"
  if curl -fsS --retry 20 --retry-connrefused --retry-delay 2 -o /dev/null "http://127.0.0.1:$http_port/healthz"; then
    echo "    posko is up"
  else
    echo "install.sh: posko does not answer yet; look at: systemctl status posko; journalctl -u posko -n 50" >&2
  fi
fi

cat <<EOF

posko $role $post_id is installed.
  status:       systemctl status posko$([[ $broker == mosquitto ]] && echo " mosquitto")
  logs:         journalctl -u posko -f
  admin token:  sudo cat $DATA_DIR/admin-token
  web and API:  http://$(hostname -I 2>/dev/null | awk '{print $1}' || true):$http_port/
  add scanner:  sudo posko devices add "Gudang pintu 1"
  backup now:   sudo systemctl start posko-backup   (USB stick labelled $usb_label)
EOF
if ((PLAN)); then
  echo "(plan only: nothing was run; files are under $ROOT)"
fi
