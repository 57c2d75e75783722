# shellcheck shell=bash
# The current BuildKit generation for scripts/e2e-up; sourced by it, never run.
#
# Docker 28 / buildx 0.29 / containerd 2.x from Debian's unstable suite, next to
# the Docker 26 / buildx 0.13 generation e2e-up starts from trixie: own prefix,
# containerd, dockerd, sockets, roots and buildx plugin dir, so the two never
# share anything but the registries. Uses e2e-up's helpers (quiet, spawn,
# await, service, refuse_unrecorded); its variables are CUR_*.

CUR_SUITE=${CACHEPORT_E2E_CURRENT_SUITE:-sid}
CUR_PKGS=(docker.io containerd docker-cli docker-buildx)
CUR_APT=$PREFIX/apt-current
CUR_DEBS=$PREFIX/debs-current
CUR_ROOT=$PREFIX/root-current
# runc stays the system's (bookworm's): the unstable one needs glibc 2.38.
CUR_PATH=$CUR_ROOT/usr/sbin:$CUR_ROOT/usr/bin:/usr/sbin:/usr/bin:/sbin:/bin
CUR_DOCKER_BIN=$CUR_ROOT/usr/bin/docker
CUR_BUILDX_BIN=$CUR_ROOT/usr/libexec/docker/cli-plugins/docker-buildx
CUR_CTR_DIR=$STATE/containerd-current
CUR_CTR_SOCK=$CUR_CTR_DIR/containerd.sock
CUR_DOCKER_DIR=$STATE/docker-current
CUR_DOCKER_SOCK=$CUR_DOCKER_DIR/docker.sock
CUR_DOCKER_CONFIG=$STATE/docker-config-current

# The Debian mirror the machine's own sources use (a URI ending in /debian),
# so no host is baked in here.
current_mirror() {
    local uri
    uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
        grep -v '^[[:space:]]*#' | grep -oE 'https?://[^][:space:]]+/debian/?([[:space:]]|$)' |
        head -n 1 | tr -d '[:space:]') || true
    [[ -n $uri ]] || die "no Debian mirror (a URI ending in /debian) in /etc/apt/sources.list*"
    echo "${uri%/}"
}

# A private apt state (sources list, lists and cache dirs of its own): the
# machine's apt configuration is never read for sources nor modified.
current_apt() {
    mkdir -p "$CUR_APT/lists/partial" "$CUR_APT/cache" "$CUR_APT/parts"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $(current_mirror) $CUR_SUITE main" \
        >"$CUR_APT/sources.list"
    local opts=(
        -o "Dir::Etc::SourceList=$CUR_APT/sources.list"
        -o "Dir::Etc::SourceParts=$CUR_APT/parts"
        -o "Dir::Etc::PreferencesParts=$CUR_APT/parts"
        -o "Dir::State::Lists=$CUR_APT/lists"
        -o "Dir::Cache=$CUR_APT/cache"
    )
    apt-get "${opts[@]}" update
    apt-get "${opts[@]}" "$@"
}

# Downloads once (the .debs are kept), unpacks when the set of .debs changed.
# Other state dirs share the prefix, hence the lock around both steps.
current_install_locked() {
    local p tmp need=() want d
    mkdir -p "$CUR_DEBS"
    for p in "${CUR_PKGS[@]}"; do compgen -G "$CUR_DEBS/${p}_*.deb" >/dev/null || need+=("$p"); done
    if ((${#need[@]})); then
        say "downloading from Debian $CUR_SUITE: ${need[*]}"
        tmp=$(mktemp -d "$PREFIX/debs-current.XXXXXX")
        chown _apt "$tmp" 2>/dev/null || true
        (cd "$tmp" && quiet current_apt download -q "${need[@]}")
        mv "$tmp"/*.deb "$CUR_DEBS/"
        rmdir "$tmp"
    fi
    want=$(cd "$CUR_DEBS" && ls -1 -- *.deb)
    [[ -f $CUR_ROOT/.unpacked && $(cat "$CUR_ROOT/.unpacked") == "$want" ]] && return 0
    say "unpacking $(wc -l <<<"$want") .debs into $CUR_ROOT"
    rm -rf "$CUR_ROOT"
    mkdir -p "$CUR_ROOT"
    for d in "$CUR_DEBS"/*.deb; do dpkg-deb -x "$d" "$CUR_ROOT"; done
    printf '%s\n' "$want" >"$CUR_ROOT/.unpacked"
}

current_install() {
    local b
    (
        flock -w 600 8 || die "another e2e-up holds $PREFIX/current.lock"
        current_install_locked
    ) 8>"$PREFIX/current.lock"
    for b in "$CUR_DOCKER_BIN" "$CUR_BUILDX_BIN" "$CUR_ROOT/usr/bin/containerd" "$CUR_ROOT/usr/bin/ctr" \
        "$CUR_ROOT/usr/sbin/dockerd"; do
        [[ -x $b ]] || die "missing after install: $b (remove $CUR_ROOT/.unpacked and retry)"
    done
}

current_ctr() { timeout 5 "$CUR_ROOT/usr/bin/ctr" --address "$CUR_CTR_SOCK" version; }

start_containerd-current() {
    refuse_unrecorded containerd-current "$CUR_CTR_SOCK" current_ctr
    mkdir -p "$CUR_CTR_DIR"/{root,state}
    # containerd 2 reads only version 3 configs as written; CRI is off, as
    # nothing here runs Kubernetes and it would want /var/lib and /etc/cni.
    cat >"$CUR_CTR_DIR/config.toml" <<EOF
version = 3
root = "$CUR_CTR_DIR/root"
state = "$CUR_CTR_DIR/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "$CUR_CTR_SOCK"

[ttrpc]
  address = "$CUR_CTR_SOCK.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""
EOF
    DAEMON_PATH=$CUR_PATH spawn containerd-current "$CUR_ROOT/usr/bin/containerd" --config "$CUR_CTR_DIR/config.toml"
}
health_containerd-current() {
    await containerd-current "an answer on $CUR_CTR_SOCK" current_ctr
}

current_docker() { env DOCKER_CONFIG="$CUR_DOCKER_CONFIG" "$CUR_DOCKER_BIN" -H "unix://$CUR_DOCKER_SOCK" "$@"; }

start_dockerd-current() {
    refuse_unrecorded dockerd-current "$CUR_DOCKER_SOCK" current_docker version
    mkdir -p "$CUR_DOCKER_DIR"/{data,exec}
    # Every path is in the config file, so the command line holds nothing
    # that could disagree with it.
    cat >"$CUR_DOCKER_DIR/daemon.json" <<EOF
{
  "features": {"containerd-snapshotter": true},
  "iptables": false, "ip6tables": false, "ip-forward": false, "bridge": "none", "storage-driver": "overlayfs",
  "data-root": "$CUR_DOCKER_DIR/data",
  "exec-root": "$CUR_DOCKER_DIR/exec",
  "pidfile": "$CUR_DOCKER_DIR/dockerd.pid",
  "hosts": ["unix://$CUR_DOCKER_SOCK"],
  "containerd": "$CUR_CTR_SOCK",
  "group": "root"
}
EOF
    rm -f "$CUR_DOCKER_DIR/dockerd.pid"
    DAEMON_PATH=$CUR_PATH spawn dockerd-current "$CUR_ROOT/usr/sbin/dockerd" --config-file "$CUR_DOCKER_DIR/daemon.json"
}
health_dockerd-current() {
    await dockerd-current "docker info on $CUR_DOCKER_SOCK" current_docker info
}

current_services() {
    mkdir -p "$CUR_DOCKER_CONFIG/cli-plugins"
    # Each docker CLI finds its own buildx: 0.13 with 26, 0.29 with 28.
    ln -sfn "$CUR_BUILDX_BIN" "$CUR_DOCKER_CONFIG/cli-plugins/docker-buildx"
    service containerd-current
    service dockerd-current
    CUR_VERSIONS=$(current_docker version --format 'dockerd {{.Server.Version}}, client {{.Client.Version}}')
    CUR_BUILDX_VERSION=$(current_docker buildx version | awk '{print $2}')
}

current_env_pairs() {
    env_pairs+=(
        CACHEPORT_E2E_CURRENT_DOCKER_HOST "unix://$CUR_DOCKER_SOCK"
        CACHEPORT_E2E_CURRENT_DOCKER_CONFIG "$CUR_DOCKER_CONFIG"
        CACHEPORT_E2E_CURRENT_DOCKER_BIN "$CUR_DOCKER_BIN"
    )
}

current_summary() {
    say "current:       unix://$CUR_DOCKER_SOCK ($CUR_VERSIONS, buildx $CUR_BUILDX_VERSION)"
}
