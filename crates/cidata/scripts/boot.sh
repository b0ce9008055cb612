#!/bin/sh
# Runs as root on every boot (from the per-boot runner): loads lima.env and param.env, runs
# boot/*.sh in order, installs the guest agent, applies provisioning, and finally creates
# /run/lima-boot-done, which the host agent waits for over SSH.
set -eu
MNT="${LIMA_CIDATA_MNT:?LIMA_CIDATA_MNT is not set}"
DONE=/run/lima-boot-done
rm -f "$DONE"

log() { echo "LIMA $(date -Iseconds)| $*"; }
load_env() {
	[ -f "$1" ] || return 0
	# shellcheck disable=SC2163
	while IFS= read -r line; do [ -n "$line" ] && export "$line"; done <"$1"
}
load_env "$MNT/lima.env"
load_env "$MNT/param.env"
load_env "$MNT/etc_environment"

CODE=0
run() {
	log "Executing $*"
	if ! "$@"; then
		log "WARNING: failed: $*"
		CODE=1
	fi
}

if [ -s "$MNT/etc_environment" ]; then
	touch /etc/environment
	sed -i '/^# BEGIN lima$/,/^# END lima$/d' /etc/environment
	{ echo "# BEGIN lima"; cat "$MNT/etc_environment"; echo "# END lima"; } >>/etc/environment
fi

for f in "$MNT"/boot/*.sh; do
	[ -e "$f" ] && run "$f"
done

if [ -f "$MNT/lima-guestagent" ]; then
	run install -D -m 755 "$MNT/lima-guestagent" "${LIMA_CIDATA_GUEST_INSTALL_PREFIX:-/usr/local}/bin/lima-guestagent"
fi

# provision.data/NAME goes to the path, owner and mode given by LIMA_CIDATA_DATAFILE_NAME_*.
for f in "$MNT"/provision.data/*; do
	[ -e "$f" ] || continue
	n=$(basename "$f")
	eval "path=\${LIMA_CIDATA_DATAFILE_${n}_PATH} owner=\${LIMA_CIDATA_DATAFILE_${n}_OWNER}"
	eval "perm=\${LIMA_CIDATA_DATAFILE_${n}_PERMISSIONS} overwrite=\${LIMA_CIDATA_DATAFILE_${n}_OVERWRITE}"
	# shellcheck disable=SC2154 # set by eval above
	if [ -e "$path" ] && [ "$overwrite" = "false" ]; then
		log "Not overwriting $path"
		continue
	fi
	# shellcheck disable=SC2154
	run install -D -m "$perm" -o "${owner%%:*}" -g "${owner#*:}" "$f" "$path"
done

for f in "$MNT"/provision.system/*; do
	[ -e "$f" ] && run "$f"
done

if [ -d "$MNT/provision.user" ]; then
	if [ -d /run/systemd/system ]; then
		loginctl enable-linger "$LIMA_CIDATA_USER" || true
		i=0
		until [ -e "/run/user/$LIMA_CIDATA_UID/systemd/private" ] || [ "$i" -ge 60 ]; do
			i=$((i + 1))
			sleep 1
		done
		[ "$i" -lt 60 ] || log "WARNING: no systemd user instance after 60s; user scripts run without it"
	fi
	params=$(grep -o '^PARAM_[^=]*' "$MNT/param.env" | paste -sd , - || true)
	script="$LIMA_CIDATA_HOME/.lima-user-script"
	for f in "$MNT"/provision.user/*; do
		[ -e "$f" ] || continue
		install -m 755 -o "$LIMA_CIDATA_USER" "$f" "$script"
		run sudo -iu "$LIMA_CIDATA_USER" ${params:+"--preserve-env=$params"} "XDG_RUNTIME_DIR=/run/user/$LIMA_CIDATA_UID" "$script"
		rm -f "$script"
	done
fi

echo "$LIMA_CIDATA_IID" >"$DONE"
log "Boot finished with code $CODE"
exit "$CODE"
