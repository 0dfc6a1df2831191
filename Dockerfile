# The image of `npm run image`, for people who build with Docker: the build stage runs the same script
# (scripts/build-image.ts) with --rootfs-dir, and the image is that root filesystem and nothing else.
# Without Docker, `npm run image` writes the same image as an OCI archive (out/image/egressgw.oci.tar).
#
#   docker build --build-arg SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) -t ghcr.io/deckhouse/egressgw:0.1.0 .
#
# Run: `controller` (the default) or `agent` as arguments, as the Deployment and the DaemonSet pass them.

FROM debian:bookworm AS build
# mmdebstrap extracts the image's Debian packages and builds the addons (AF_PACKET, libnftables) against them; npm
# installs our dependencies, and with them the node binary the image runs (the `node` package).
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mmdebstrap ca-certificates nodejs npm \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# --ignore-scripts: the root package's node-gyp build is not needed here (the script compiles the addons
# for the image's glibc itself); the `node` package's installer is run on its own.
RUN npm ci --ignore-scripts --no-audit --no-fund && npm rebuild node
ARG SOURCE_DATE_EPOCH
RUN test -n "$SOURCE_DATE_EPOCH" || { echo 'build with --build-arg SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)'; exit 1; } \
 && node_modules/.bin/node scripts/build-image.ts --rootfs-dir /rootfs

FROM scratch
COPY --from=build /rootfs/ /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin NODE_ENV=production
WORKDIR /app
# The controller runs as this uid (the Deployment sets runAsNonRoot); the agent's pod spec runs it as root
# with NET_ADMIN and NET_RAW only.
USER 64535:64535
ENTRYPOINT ["/usr/local/bin/node", "/app/bin/egressgw.js"]
CMD ["controller"]
