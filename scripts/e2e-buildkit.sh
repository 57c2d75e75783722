# shellcheck shell=bash
# BuildKit itself for scripts/e2e-up (sourced by it, never run): the builders that keep results to
# themselves, made from ../shared/buildkit (relative to the repo root) without any pull.
#
# - An image for buildx's docker-container driver: buildkitd as entrypoint, buildctl on PATH, the
#   system's runc and the libraries it links, made with `docker import` in the main engine, tagged on
#   the plain registry and pushed there. buildx pulls the image before it falls back to a local one, so
#   either generation's engine gets it from there (a loopback tag means no lookup of Docker Hub). It is
#   not imported into the current engine too: its pull would replace that copy (dockerd 28 then shows
#   the pulled one without its config), so every e2e-up would import again and leave one behind.
# - A buildkitd.toml marking the loopback registries (ours and Pulp's nginx front) plain HTTP.
# - A standalone buildkitd on the host for the remote driver: OCI worker, the system's runc, its own
#   root and unix socket under the state dir; started and stopped by PID like the other daemons.
#
# Without that folder (a clone outside this project) nothing is made, and the env file says why
# (CACHEPORT_E2E_BUILDKIT_MISSING); the tests of these tiers then do not run. Uses e2e-up's helpers
# and variables; its own are BK_*.

BK_SRC=${CACHEPORT_E2E_BUILDKIT_DIR:-$(realpath -m "$here/../../shared/buildkit")}
BK_STATE=$STATE/buildkit
BK_SOCK=$BK_STATE/buildkitd.sock
BK_CONFIG=$BK_STATE/buildkitd.toml
BK_REPO=cacheport-e2e/buildkit
BK_MISSING=
BK_IMAGE=

# Why these tiers cannot be provisioned here, or nothing.
buildkit_missing() {
    if [[ ! -r $BK_SRC/SHA256SUMS ]]; then
        echo "no BuildKit at $BK_SRC (a clone outside the project; set CACHEPORT_E2E_BUILDKIT_DIR to a folder with its archive and SHA256SUMS)"
    elif [[ $(uname -m) != x86_64 ]]; then
        echo "the BuildKit in $BK_SRC is linux-amd64 only, and this machine is $(uname -m)"
    fi
}

# Verifies the archive against SHA256SUMS, then unpacks it (and checks each binary) into the shared
# prefix, once per archive; other state dirs share it, hence the lock.
buildkit_install_locked() {
    local sums=$BK_SRC/SHA256SUMS archive=$BK_ARCHIVE sum tmp
    sum=$(awk -v a="$archive" '$2 == a { print $1 }' "$sums")
    [[ -s $BK_DIR/.installed && $(cat "$BK_DIR/.installed") == "$sum" ]] && return 0
    (cd "$BK_SRC" && grep -F "  $archive" SHA256SUMS | sha256sum --quiet -c -) ||
        die "$BK_SRC/$archive does not match its SHA256SUMS line"
    say "unpacking BuildKit $BK_VERSION from $BK_SRC"
    tmp=$(mktemp -d "$PREFIX/buildkit.XXXXXX")
    mkdir -p "$tmp/bin"
    tar -xJf "$BK_SRC/$archive" -C "$tmp/bin"
    (cd "$tmp/bin" && grep -E '  (buildkitd|buildctl)$' "$sums" | sha256sum --quiet -c -) ||
        die "the binaries in $BK_SRC/$archive do not match SHA256SUMS"
    printf '%s\n' "$sum" >"$tmp/.installed"
    rm -rf "$BK_DIR"
    mv "$tmp" "$BK_DIR"
}

# The image's root: /usr/bin/buildkitd and buildctl, the system's runc with every library ldd names,
# and the empty directories buildkitd expects. A fixed mtime and order make the same tar each time,
# so its digest (the image's label) says whether an engine's copy is current.
buildkit_rootfs() {
    local root=$BK_DIR/rootfs runc lib tar=$BK_DIR/rootfs.tar
    runc=$(command -v runc) || die "no runc on PATH (e2e-up installs Debian's)"
    rm -rf "$root" "$tar"
    mkdir -p "$root"/{usr/bin,usr/sbin,etc/buildkit,var/lib/buildkit,run,tmp,proc,sys,dev}
    chmod 1777 "$root/tmp"
    cp "$BK_DIR/bin/buildkitd" "$BK_DIR/bin/buildctl" "$root/usr/bin/"
    cp -L "$runc" "$root/usr/sbin/runc"
    for lib in $(ldd "$runc" | grep -oE '/[^ ]+'); do
        mkdir -p "$root${lib%/*}"
        cp -L "$lib" "$root$lib"
    done
    tar -C "$root" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$tar.tmp" .
    sha256sum "$tar.tmp" | cut -d' ' -f1 >"$tar.sha256"
    mv "$tar.tmp" "$tar"
    rm -rf "$root"
}

# The archive SHA256SUMS names, its version, and where it is unpacked.
buildkit_paths() {
    BK_ARCHIVE=$(awk '$2 ~ /^buildkit-v.*-linux-amd64\.tar\.xz$/ { print $2; exit }' "$BK_SRC/SHA256SUMS")
    [[ -n $BK_ARCHIVE ]] || die "no buildkit-v*-linux-amd64.tar.xz line in $BK_SRC/SHA256SUMS"
    BK_VERSION=${BK_ARCHIVE#buildkit-}
    BK_VERSION=${BK_VERSION%-linux-amd64.tar.xz}
    BK_DIR=$PREFIX/buildkit-$BK_VERSION
}

buildkit_install() {
    buildkit_paths
    (
        flock -w 600 8 || die "another e2e-up holds $PREFIX/buildkit.lock"
        buildkit_install_locked
        # runc changes with the system's packages, so the root is remade when it did.
        local runc_sum
        runc_sum=$(sha256sum "$(command -v runc)" | cut -d' ' -f1)
        if [[ ! -s $BK_DIR/rootfs.tar.sha256 || $(cat "$BK_DIR/.runc" 2>/dev/null) != "$runc_sum" ]]; then
            buildkit_rootfs
            printf '%s\n' "$runc_sum" >"$BK_DIR/.runc"
        fi
    ) 8>"$PREFIX/buildkit.lock"
    [[ -x $BK_DIR/bin/buildkitd && -x $BK_DIR/bin/buildctl && -s $BK_DIR/rootfs.tar && -s $BK_DIR/rootfs.tar.sha256 ]] ||
        die "missing after install: $BK_DIR/bin/buildkitd, buildctl or rootfs.tar (remove $BK_DIR and retry)"
}

# Imports the root unless the engine holds the same one under the tag already. $@: the docker command.
buildkit_import() {
    local have
    have=$("$@" image inspect --format '{{index .Config.Labels "org.cacheport.e2e.rootfs"}}' "$BK_IMAGE" \
        2>/dev/null) || true
    [[ $have == "$BK_ROOTFS_SUM" ]] && return 1
    quiet "$@" import \
        --change 'ENTRYPOINT ["buildkitd"]' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change "LABEL org.cacheport.e2e.rootfs=$BK_ROOTFS_SUM" \
        "$BK_DIR/rootfs.tar" "$BK_IMAGE"
}

buildkit_image() {
    local main_docker=(env DOCKER_CONFIG="$DOCKER_CONFIG_DIR" "$DOCKER_BIN" -H "unix://$DOCKER_SOCK") pushed
    BK_ROOTFS_SUM=$(cat "$BK_DIR/rootfs.tar.sha256")
    BK_IMAGE=127.0.0.1:$REGISTRY_PORT/$BK_REPO:$BK_VERSION
    buildkit_import "${main_docker[@]}" && say "imported $BK_IMAGE into dockerd"
    # Pushed when the registry lacks it or holds another root (remembered beside the registry's data).
    pushed=$STATE/registry/buildkit-pushed
    if [[ $(cat "$pushed" 2>/dev/null) != "$BK_IMAGE $BK_ROOTFS_SUM" ]] ||
        ! http_is 200 -I -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
            -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
            "http://127.0.0.1:$REGISTRY_PORT/v2/$BK_REPO/manifests/$BK_VERSION"; then
        quiet "${main_docker[@]}" push "$BK_IMAGE"
        printf '%s\n' "$BK_IMAGE $BK_ROOTFS_SUM" >"$pushed"
        say "pushed $BK_IMAGE"
    fi
}

# Plain HTTP for every loopback registry a test builds against: BuildKit tries TLS first and would
# fail on one that does not answer a TLS hello with HTTP. Pulp's front is its nginx port, fixed by
# scripts/pulp/common.sh (asked in a bash of its own, as that file sets variables of the same names).
buildkit_config() {
    local pulp_port reg
    # shellcheck disable=SC2016  # expanded by that bash
    pulp_port=$(bash -c 'source "$1" && echo "$FRONT_PORT"' _ "$here/pulp/common.sh")
    mkdir -p "$BK_STATE"
    {
        echo "# Written by scripts/e2e-up: the loopback registries the e2e tests use speak plain HTTP."
        for reg in "$REGISTRY_PORT" "$AUTH_PORT" "$pulp_port"; do
            printf '[registry."127.0.0.1:%s"]\n  http = true\n' "$reg"
        done
    } >"$BK_CONFIG.tmp"
    if ! cmp -s "$BK_CONFIG.tmp" "$BK_CONFIG" && recorded_pid buildkitd >/dev/null; then
        # It reads the file only when it starts.
        say "buildkitd.toml changed: restarting buildkitd"
        kill -TERM "$(recorded_pid buildkitd)"
        local deadline=$((SECONDS + 10))
        while recorded_pid buildkitd >/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
        recorded_pid buildkitd >/dev/null && die "buildkitd did not stop after SIGTERM"
    fi
    mv "$BK_CONFIG.tmp" "$BK_CONFIG"
}

buildkit_ctl() { timeout 5 "$BK_DIR/bin/buildctl" --addr "unix://$BK_SOCK" debug workers; }

start_buildkitd() {
    refuse_unrecorded buildkitd "$BK_SOCK" buildkit_ctl
    mkdir -p "$BK_STATE/root"
    # Builds here run with --network=host, which the daemon must allow.
    spawn buildkitd "$BK_DIR/bin/buildkitd" \
        --config "$BK_CONFIG" \
        --root "$BK_STATE/root" \
        --addr "unix://$BK_SOCK" \
        --oci-worker=true --containerd-worker=false \
        --oci-worker-binary "$(command -v runc)" \
        --allow-insecure-entitlement network.host
}
health_buildkitd() {
    await buildkitd "an answer on $BK_SOCK" buildkit_ctl
}

# Called by e2e-up once the registries are up.
buildkit_services() {
    BK_MISSING=$(buildkit_missing)
    if [[ -n $BK_MISSING ]]; then
        say "skipping the docker-container and remote builders: $BK_MISSING"
        return 0
    fi
    local t=$EPOCHREALTIME
    buildkit_install
    buildkit_image
    buildkit_config
    service buildkitd
    BK_SECONDS=$(elapsed "$t")
}

buildkit_env_pairs() {
    if [[ -n $BK_MISSING ]]; then
        env_pairs+=(CACHEPORT_E2E_BUILDKIT_MISSING "$BK_MISSING")
        return 0
    fi
    env_pairs+=(
        CACHEPORT_E2E_BUILDKIT_IMAGE "$BK_IMAGE"
        CACHEPORT_E2E_BUILDKITD_CONFIG "$BK_CONFIG"
        CACHEPORT_E2E_BUILDKIT_ADDR "unix://$BK_SOCK"
        CACHEPORT_E2E_BUILDCTL "$BK_DIR/bin/buildctl"
    )
}

buildkit_summary() {
    if [[ -n $BK_MISSING ]]; then
        say "buildkit:      not provisioned: $BK_MISSING"
    else
        say "buildkit:      $BK_VERSION, image $BK_IMAGE, remote unix://$BK_SOCK (${BK_SECONDS}s)"
    fi
}
