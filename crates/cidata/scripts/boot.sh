#!/bin/sh
# Runs as root on every boot (from the per-boot runner): loads lima.env and param.env, sets
# up additionalDisks (formatted the first time, mounted on /mnt/lima-NAME), runs boot/*.sh in
# order, then the `dependency` provisioning scripts, installs the guest agent and starts it as
# the systemd service lima-guestagent.service, applies the other provisioning steps in
# upstream's order (data, yq, system, user), and finally creates /run/lima-boot-done, which
# the host agent waits for over SSH.
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

# BEGIN hostservices
# /run/host-services owned by the user (upstream's 26-host-services.sh): with ssh.forwardAgent
# the host agent links the forwarded agent socket there as the user, without sudo, so
# containers can mount a fixed path (/run/host-services/ssh-auth.sock). Early: the host agent
# links it as soon as SSH answers (and waits a little for the directory).
HOST_SERVICES=/run/host-services
run mkdir -p "$HOST_SERVICES"
run chmod 700 "$HOST_SERVICES"
run chown -R "$LIMA_CIDATA_USER" "$HOST_SERVICES"
# END hostservices

# host.lima.internal, and hostResolver.hosts when the host agent's DNS server is off (the
# seed's etc_hosts, resolved on the host when the seed was made): a block of /etc/hosts
# replaced on every boot (upstream's 06-etc-hosts.sh). With the DNS server (the next section)
# the hosts are answered by it, as upstream does.
# BEGIN hosts
ETC_HOSTS=/etc/hosts
if [ -s "$MNT/etc_hosts" ]; then
	touch "$ETC_HOSTS"
	sed -i '/^# BEGIN lima$/,/^# END lima$/d' "$ETC_HOSTS"
	{ echo "# BEGIN lima"; cat "$MNT/etc_hosts"; echo "# END lima"; } >>"$ETC_HOSTS"
fi
# END hosts

# BEGIN dns
# hostResolver (upstream's 09-host-dns-setup.sh): the guest's DNS queries to slirp's resolver
# (LIMA_CIDATA_SLIRP_DNS:53, what DHCP gives the guest) are DNATed to the host agent's DNS
# server, which the guest reaches at the gateway (slirp maps it to the host's 127.0.0.1).
# The rules live in their own nat chain, flushed and written again on every boot.
DNS_CHAIN=LIMADNS
setup_host_dns() {
	if ! command -v iptables >/dev/null 2>&1; then
		log "WARNING: hostResolver: iptables is not installed in the guest, so DNS is not sent to the host agent (hostResolver.hosts will not resolve); install iptables or set hostResolver.enabled: false"
		return 1
	fi
	if ! iptables --table nat -n --list "$DNS_CHAIN" >/dev/null 2>&1; then
		iptables --table nat --new-chain "$DNS_CHAIN" || return 1
		iptables --table nat --insert PREROUTING 1 --jump "$DNS_CHAIN" || return 1
		iptables --table nat --insert OUTPUT 1 --jump "$DNS_CHAIN" || return 1
	fi
	iptables --table nat --flush "$DNS_CHAIN" || return 1
	if [ "${LIMA_CIDATA_UDP_DNS_LOCAL_PORT:-0}" -ne 0 ]; then
		iptables --table nat --append "$DNS_CHAIN" --destination "$LIMA_CIDATA_SLIRP_DNS" --protocol udp --dport 53 --jump DNAT \
			--to-destination "$LIMA_CIDATA_SLIRP_GATEWAY:$LIMA_CIDATA_UDP_DNS_LOCAL_PORT" || return 1
	fi
	if [ "${LIMA_CIDATA_TCP_DNS_LOCAL_PORT:-0}" -ne 0 ]; then
		iptables --table nat --append "$DNS_CHAIN" --destination "$LIMA_CIDATA_SLIRP_DNS" --protocol tcp --dport 53 --jump DNAT \
			--to-destination "$LIMA_CIDATA_SLIRP_GATEWAY:$LIMA_CIDATA_TCP_DNS_LOCAL_PORT" || return 1
	fi
}
if [ "${LIMA_CIDATA_UDP_DNS_LOCAL_PORT:-0}" -ne 0 ] || [ "${LIMA_CIDATA_TCP_DNS_LOCAL_PORT:-0}" -ne 0 ]; then
	run setup_host_dns
fi
# END dns

# Mount points: made when missing and owned by the user (sshfs mounts there as the user);
# never chowned while mounted, since a 9p or virtiofs mount would pass the chown on to the
# host's directory.
i=0
while [ "$i" -lt "${LIMA_CIDATA_MOUNTS:-0}" ]; do
	eval "mp=\${LIMA_CIDATA_MOUNTS_${i}_MOUNTPOINT}"
	# shellcheck disable=SC2154 # set by eval above
	[ -d "$mp" ] || run mkdir -p "$mp"
	if ! mountpoint -q "$mp"; then
		run chown "$LIMA_CIDATA_UID:$(id -g "$LIMA_CIDATA_USER")" "$mp"
	fi
	i=$((i + 1))
done
# The host agent runs sshfs as the user, with allow_other.
if [ "$LIMA_CIDATA_MOUNTTYPE" = reverse-sshfs ] && [ "${LIMA_CIDATA_MOUNTS:-0}" -gt 0 ]; then
	for conf in /etc/fuse.conf /etc/fuse3.conf; do
		if [ -e "$conf" ] && ! grep -q '^user_allow_other' "$conf"; then
			echo user_allow_other >>"$conf"
		fi
	done
fi

# BEGIN disks
# additionalDisks (lima.env's LIMA_CIDATA_DISK_<i>_*), disk i on /dev/<DEVICE>: the first
# time, unless `format: false`, one GPT partition and a file system labelled lima-NAME
# (fsType, default ext4, with fsArgs); then mounted on /mnt/lima-NAME (a swap disk is
# enabled instead), and the partition and file system grown to a disk resized since (best
# effort: never a failed boot for that). A disk that cannot be set up fails its `run`.
DISK_DEV=/dev
DISK_MNT=/mnt
disk_var() { eval "printf '%s' \"\${LIMA_CIDATA_DISK_${1}_${2}:-}\""; }
# Whether partition $1 holds a file system (blkid prints its TYPE).
disk_has_fs() { blkid "$1" 2>/dev/null | grep -q ' TYPE='; }
# Whether $1 is mounted (in /proc/mounts).
disk_mounted() { grep -qs "^[^ ]* $1 " /proc/mounts; }
setup_disk() {
	d_name=$(disk_var "$1" NAME)
	d_dev="$DISK_DEV/$(disk_var "$1" DEVICE)"
	d_format=$(disk_var "$1" FORMAT)
	d_fstype=$(disk_var "$1" FSTYPE)
	d_fsargs=$(disk_var "$1" FSARGS)
	[ -n "$d_format" ] || d_format=true
	[ -n "$d_fstype" ] || d_fstype=ext4
	d_part="${d_dev}1"
	d_label="lima-$d_name"
	if ! [ -e "$d_dev" ]; then
		log "disk $d_name: no device $d_dev"
		return 1
	fi
	# First time: no file system with its label, and none on the partition either (a label
	# too long for the file system is cut short, so the label alone must not decide).
	if [ "$d_format" = true ] && ! [ -e "$DISK_DEV/disk/by-label/$d_label" ] && ! disk_has_fs "$d_part"; then
		log "disk $d_name: formatting $d_dev ($d_fstype)"
		if [ "$d_fstype" = swap ]; then
			echo 'type=swap' | sfdisk --label gpt "$d_dev" || return 1
			# shellcheck disable=SC2086 # fsArgs are separate arguments
			mkswap $d_fsargs -L "$d_label" "$d_part" || return 1
		else
			echo 'type=linux' | sfdisk --label gpt "$d_dev" || return 1
			# shellcheck disable=SC2086
			"mkfs.$d_fstype" $d_fsargs -L "$d_label" "$d_part" || return 1
		fi
	fi
	if [ "$d_fstype" = swap ]; then
		grep -qs "^$d_part " /proc/swaps || swapon "$d_part" || return 1
		return 0
	fi
	d_mnt="$DISK_MNT/$d_label"
	mkdir -p "$d_mnt" || return 1
	if ! disk_mounted "$d_mnt"; then
		mount -t "$d_fstype" "$d_part" "$d_mnt" || return 1
	fi
	# Grown by `limactl disk resize`: partition first (growpart says NOCHANGE otherwise),
	# then the mounted file system; its tool finds nothing to do when it already fills it.
	if command -v growpart >/dev/null 2>&1; then
		growpart "$d_dev" 1 || true
	fi
	case "$d_fstype" in
	ext2 | ext3 | ext4) d_grow="resize2fs $d_part" ;;
	xfs) d_grow="xfs_growfs $d_mnt" ;;
	btrfs) d_grow="btrfs filesystem resize max $d_mnt" ;;
	*) d_grow="" ;;
	esac
	if [ -n "$d_grow" ] && command -v "${d_grow%% *}" >/dev/null 2>&1; then
		# shellcheck disable=SC2086 # a command and its arguments
		$d_grow || log "WARNING: disk $d_name: could not grow its $d_fstype file system"
	fi
	return 0
}
disk_i=0
while [ "$disk_i" -lt "${LIMA_CIDATA_DISKS:-0}" ]; do
	run setup_disk "$disk_i"
	disk_i=$((disk_i + 1))
done
# END disks

# The guest home is /home/USER.guest since Lima 2.1 and was /home/USER.linux before: each name
# links to the other, so scripts written for either find it (upstream's 05-guest-home.sh).
if [ -d "/home/${LIMA_CIDATA_USER}.guest" ] && [ ! -e "/home/${LIMA_CIDATA_USER}.linux" ]; then
	ln -s "${LIMA_CIDATA_USER}.guest" "/home/${LIMA_CIDATA_USER}.linux"
fi
if [ -d "/home/${LIMA_CIDATA_USER}.linux" ] && [ ! -e "/home/${LIMA_CIDATA_USER}.guest" ]; then
	ln -s "${LIMA_CIDATA_USER}.linux" "/home/${LIMA_CIDATA_USER}.guest"
fi

for f in "$MNT"/boot/*.sh; do
	[ -e "$f" ] && run "$f"
done

# BEGIN dependency
# provision.dependency/*: before every other provisioning step, as upstream runs them first
# thing in its package installation script. This boot script installs no packages of its own
# (the images carry what Lima needs), so LIMA_CIDATA_SKIP_DEFAULT_DEPENDENCY_RESOLUTION has
# nothing to skip here.
for f in "$MNT"/provision.dependency/*; do
	[ -e "$f" ] && run "$f"
done
# END dependency

# BEGIN guestagent
# The guest agent: installed when the seed has one (replaced through a rename, so a running
# copy is never written to), then run by systemd as lima-guestagent.service, which serves the
# host agent over the virtio-serial port; restarted when its binary or unit changed.
GA_UNIT_DIR=/etc/systemd/system
GA_SYSTEMD_RUN=/run/systemd/system
install_guestagent() {
	ga_bin="${LIMA_CIDATA_GUEST_INSTALL_PREFIX:-/usr/local}/bin/lima-guestagent"
	ga_changed=false
	if ! cmp -s "$MNT/lima-guestagent" "$ga_bin"; then
		install -D -m 755 "$MNT/lima-guestagent" "$ga_bin.new" || return 1
		mv -f "$ga_bin.new" "$ga_bin" || return 1
		ga_changed=true
	fi
	if ! [ -d "$GA_SYSTEMD_RUN" ] || ! command -v systemctl >/dev/null 2>&1; then
		log "No systemd: the guest agent is installed but not started (no port forwarding)"
		return 0
	fi
	ga_unit="$GA_UNIT_DIR/lima-guestagent.service"
	mkdir -p "$GA_UNIT_DIR" || return 1
	cat >"$ga_unit.new" <<UNIT || return 1
[Unit]
Description=Lima guest agent (port forwarding)
After=network.target

[Service]
Type=simple
ExecStart=$ga_bin daemon
Restart=always
RestartSec=1
OOMPolicy=continue
OOMScoreAdjust=-500

[Install]
WantedBy=multi-user.target
UNIT
	if cmp -s "$ga_unit.new" "$ga_unit"; then
		rm -f "$ga_unit.new"
	else
		mv -f "$ga_unit.new" "$ga_unit" || return 1
		ga_changed=true
		systemctl daemon-reload || return 1
	fi
	# Started once: a restart only for a copy that was running before the change (each
	# start costs the agent's session setup, and the host agent waits on its announcement).
	ga_was_active=false
	if systemctl is-active --quiet lima-guestagent.service; then
		ga_was_active=true
	fi
	systemctl enable --now lima-guestagent.service || return 1
	if [ "$ga_changed" = true ] && [ "$ga_was_active" = true ]; then
		systemctl restart lima-guestagent.service || return 1
	fi
}
if [ -f "$MNT/lima-guestagent" ]; then
	run install_guestagent
fi
# END guestagent

# BEGIN containerd
# containerd.system / containerd.user (upstream's 40-install-containerd.sh): the seed's
# nerdctl-full archive unpacked into the install prefix when its nerdctl differs from the
# installed one, then rootful containerd, BuildKit and stargz enabled as system services,
# and/or rootless containerd installed for the user with containerd-rootless-setuptool.sh.
# CTD_ETC and CTD_RUN stand for /etc and /run (tests move them).
CTD_ETC=${CTD_ETC:-/etc}
CTD_RUN=${CTD_RUN:-/run}
as_user() {
	sudo -iu "$LIMA_CIDATA_USER" "XDG_RUNTIME_DIR=$CTD_RUN/user/$LIMA_CIDATA_UID" "PATH=$ctd_prefix/bin:$PATH" "$@"
}
install_containerd() {
	ctd_prefix="${LIMA_CIDATA_GUEST_INSTALL_PREFIX:-/usr/local}"
	ctd_archive="$MNT/${LIMA_CIDATA_CONTAINERD_ARCHIVE:-nerdctl-full.tgz}"
	if ! [ -f "$ctd_archive" ]; then
		log "containerd: the seed has no $ctd_archive"
		return 1
	fi
	if ! command -v systemctl >/dev/null 2>&1; then
		log "No systemd: containerd is not installed"
		return 0
	fi
	ctd_tmp=$(mktemp -d) || return 1
	if ! tar -C "$ctd_tmp" -xzf "$ctd_archive" bin/nerdctl; then
		rm -rf "$ctd_tmp"
		return 1
	fi
	if ! cmp -s "$ctd_tmp/bin/nerdctl" "$ctd_prefix/bin/nerdctl"; then
		if [ -f "$ctd_prefix/bin/nerdctl" ]; then
			log "Upgrading nerdctl"
			systemctl disable --now containerd buildkit stargz-snapshotter || true
		fi
		if ! mkdir -p "$ctd_prefix" || ! tar -C "$ctd_prefix" -xzf "$ctd_archive"; then
			rm -rf "$ctd_tmp"
			return 1
		fi
		mkdir -p "$CTD_ETC/bash_completion.d"
		"$ctd_prefix/bin/nerdctl" completion bash >"$CTD_ETC/bash_completion.d/nerdctl" || true
	fi
	rm -rf "$ctd_tmp"
	systemctl daemon-reload || return 1
	if [ "${LIMA_CIDATA_CONTAINERD_SYSTEM:-}" = 1 ]; then
		if ! [ -e "$CTD_ETC/containerd/config.toml" ]; then
			mkdir -p "$CTD_ETC/containerd"
			cat >"$CTD_ETC/containerd/config.toml" <<EOF
version = 2
imports = ['/etc/containerd/conf.d/*.toml']
[plugins."io.containerd.grpc.v1.cri"]
  enable_cdi = true
[proxy_plugins]
  [proxy_plugins."stargz"]
    type = "snapshot"
    address = "/run/containerd-stargz-grpc/containerd-stargz-grpc.sock"
EOF
		fi
		if ! [ -e "$CTD_ETC/buildkit/buildkitd.toml" ]; then
			mkdir -p "$CTD_ETC/buildkit"
			cat >"$CTD_ETC/buildkit/buildkitd.toml" <<EOF
[worker.oci]
  enabled = false

[worker.containerd]
  enabled = true
  namespace = "default"
  snapshotter = "overlayfs"
EOF
		fi
		systemctl enable --now containerd buildkit stargz-snapshotter || return 1
	fi
	if [ "${LIMA_CIDATA_CONTAINERD_USER:-}" = 1 ]; then
		ctd_conf="$LIMA_CIDATA_HOME/.config/containerd"
		if ! [ -e "$ctd_conf/config.toml" ]; then
			mkdir -p "$ctd_conf"
			cat >"$ctd_conf/config.toml" <<EOF
version = 2
[plugins."io.containerd.grpc.v1.cri"]
  enable_cdi = true
[proxy_plugins]
  [proxy_plugins."fuse-overlayfs"]
    type = "snapshot"
    address = "/run/user/$LIMA_CIDATA_UID/containerd-fuse-overlayfs.sock"
  [proxy_plugins."stargz"]
    type = "snapshot"
    address = "/run/user/$LIMA_CIDATA_UID/containerd-stargz-grpc/containerd-stargz-grpc.sock"
EOF
			chown -R "$LIMA_CIDATA_USER" "$LIMA_CIDATA_HOME/.config" || return 1
		fi
		if ! [ -e "$LIMA_CIDATA_HOME/.config/systemd/user/containerd.service" ]; then
			loginctl enable-linger "$LIMA_CIDATA_USER" || true
			i=0
			until [ -e "$CTD_RUN/user/$LIMA_CIDATA_UID/systemd/private" ] || [ "$i" -ge 60 ]; do
				i=$((i + 1))
				sleep 1
			done
			as_user containerd-rootless-setuptool.sh install || return 1
			as_user "CONTAINERD_NAMESPACE=default" "CONTAINERD_SNAPSHOTTER=overlayfs" \
				containerd-rootless-setuptool.sh install-buildkit-containerd || return 1
			as_user containerd-rootless-setuptool.sh install-stargz ||
				log "WARNING: rootless stargz not installed"
		fi
	fi
}
if [ "${LIMA_CIDATA_CONTAINERD_SYSTEM:-}" = 1 ] || [ "${LIMA_CIDATA_CONTAINERD_USER:-}" = 1 ]; then
	run install_containerd
fi
# END containerd

# Mounts come before provisioning. cloud-init mounted the fstab ones (9p, virtiofs) already,
# except where it could not (a mount point it did not make); try those again, loudly.
case "$LIMA_CIDATA_MOUNTTYPE" in
9p | virtiofs)
	i=0
	while [ "$i" -lt "${LIMA_CIDATA_MOUNTS:-0}" ]; do
		eval "mp=\${LIMA_CIDATA_MOUNTS_${i}_MOUNTPOINT}"
		mountpoint -q "$mp" || run mount "$mp"
		i=$((i + 1))
	done
	;;
reverse-sshfs)
	# The host agent mounts these over SSH, then creates the file.
	if [ "${LIMA_CIDATA_MOUNTS:-0}" -gt 0 ]; then
		i=0
		until [ -e /run/lima-sshfs-mounts-ready ] || [ "$i" -ge 120 ]; do
			i=$((i + 1))
			sleep 1
		done
		[ "$i" -lt 120 ] || log "WARNING: reverse-sshfs mounts not up after 120s; provisioning without them"
	fi
	;;
esac

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

# BEGIN yq
# provision.yq/NAME holds a `yq` step's expression: the seed's guest agent applies it to the
# file at LIMA_CIDATA_YQ_PROVISION_NAME_PATH (run on null when the file is missing) and prints
# the new text, which is then installed with the step's owner and permissions; a failed edit
# leaves the file as it was.
yq_step() {
	y_name=$(basename "$1")
	eval "y_path=\${LIMA_CIDATA_YQ_PROVISION_${y_name}_PATH} y_owner=\${LIMA_CIDATA_YQ_PROVISION_${y_name}_OWNER}"
	eval "y_perm=\${LIMA_CIDATA_YQ_PROVISION_${y_name}_PERMISSIONS} y_format=\${LIMA_CIDATA_YQ_PROVISION_${y_name}_FORMAT}"
	if ! [ -x "$MNT/lima-guestagent" ]; then
		log "no guest agent in the seed to apply $1 with"
		return 1
	fi
	y_tmp=$(mktemp) || return 1
	# shellcheck disable=SC2154 # set by eval above
	if "$MNT/lima-guestagent" yq --format "$y_format" --from-file "$1" "$y_path" >"$y_tmp" &&
		install -D -m "$y_perm" -o "${y_owner%%:*}" -g "${y_owner#*:}" "$y_tmp" "$y_path"; then
		log "Updated $y_path"
		rm -f "$y_tmp"
		return 0
	fi
	rm -f "$y_tmp"
	return 1
}
for f in "$MNT"/provision.yq/*; do
	[ -e "$f" ] && run yq_step "$f"
done
# END yq

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

# Without passwordless sudo the user needs a password: one is generated once and left in
# ~/password (0600), as upstream does.
if [ "${LIMA_CIDATA_PASSWORDLESS_SUDO:-1}" != "1" ] && [ ! -f "$LIMA_CIDATA_HOME/.lima-password-set" ]; then
	PASSWORD=$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
	if echo "$LIMA_CIDATA_USER:$PASSWORD" | chpasswd; then
		(umask 077 && echo "$PASSWORD" >"$LIMA_CIDATA_HOME/password")
		touch "$LIMA_CIDATA_HOME/.lima-password-set"
		chown "$LIMA_CIDATA_USER:" "$LIMA_CIDATA_HOME/password" "$LIMA_CIDATA_HOME/.lima-password-set" || CODE=1
	else
		log "WARNING: failed to set password via chpasswd"
		CODE=1
	fi
fi

echo "$LIMA_CIDATA_IID" >"$DONE"
log "Boot finished with code $CODE"
exit "$CODE"
