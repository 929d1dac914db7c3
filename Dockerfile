# Multi-stage build. Debian (glibc) base: the native secp256k1 prebuild needs glibc, not musl.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json schema.sql ./
COPY src ./src
# Build tools only in this stage: the native modules (secp256k1, zstd-napi) compile here when no prebuild fits.
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
# `npm ci` runs `prepare`, which compiles src/ to dist/
RUN npm ci && npm prune --omit=dev

FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    RELAY_DATA_DIR=/data \
    RELAY_API_LISTEN=:2470 \
    RELAY_METRICS_LISTEN=:2471
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json schema.sql ./
COPY config ./config
COPY assets ./assets
RUN mkdir -p /data && chown node:node /data
USER node
EXPOSE 2470 2471
VOLUME ["/data"]
ENTRYPOINT ["node", "dist/src/cli.js"]
CMD ["serve"]
