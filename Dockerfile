# One image for both parts: `docker run IMG controller` / `docker run IMG agent` (the Deployment and the
# DaemonSet pass the subcommand as args). Node 24 runs the TypeScript sources directly, so there is no
# compile step; the only thing built is the AF_PACKET N-API addon (binding.gyp at the package root).

FROM node:24-slim AS build
RUN apt-get update -q \
 && apt-get install -y -q --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# Use the image's own headers instead of downloading them during node-gyp.
ENV npm_config_nodedir=/usr/local
COPY package.json package-lock.json binding.gyp ./
COPY native ./native
# Production dependencies only; npm runs `node-gyp rebuild` for the root package because of binding.gyp.
RUN npm ci --omit=dev --no-audit --no-fund \
 && test -f build/Release/egressgw_packet.node \
 && rm -rf build/Release/obj.target build/Release/.deps

FROM node:24-slim
# The agent manages addresses through iproute2 (`ip -json`); the Linux data plane (--dataplane linux) also
# runs nft (nftables) and sysctl (procps).
RUN apt-get update -q \
 && apt-get install -y -q --no-install-recommends iproute2 nftables procps \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/build/Release/egressgw_packet.node ./build/Release/egressgw_packet.node
COPY package.json ./
COPY bin ./bin
COPY src ./src
# `egressgw manifests` renders the install from this tree.
COPY deploy ./deploy
# The controller runs as this uid (the Deployment sets runAsNonRoot); the agent's pod spec runs it as root
# with NET_ADMIN and NET_RAW only.
USER 64535:64535
ENTRYPOINT ["node", "bin/egressgw.js"]
CMD ["controller"]
