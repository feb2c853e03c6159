# Sourced by the nginx scripts of bench/ (from the repository's root, with
# `log` defined): installs nginx when missing (apt-get; not enabled as a
# service) and sets NGINX, and SLUICE to the release binary unless given.

if ! command -v nginx >/dev/null && [[ ! -x /usr/sbin/nginx ]]; then
    log "installing nginx (apt-get; not enabled as a service)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null \
        || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [[ -z ${SLUICE:-} ]]; then
    log "building the release binary"
    cargo build --release --quiet
    SLUICE=${CARGO_TARGET_DIR:-$PWD/target}/release/sluice
fi
