# syntax=docker/dockerfile:1
# tenantkit image: the API (default command) and the BullMQ worker (`node dist/src/worker.js`) share it.
#   docker build -t tenantkit .
#   docker run --rm -p 3000:3000 -e DATABASE_URL=… -e REDIS_URL=… -e ENCRYPTION_KEYS=… -e SESSION_SECRETS=… -e SMTP_HOST=… tenantkit
# Node >= 20.19 is required (require(esm) on by default); the 20 line's current release satisfies it.
ARG NODE_IMAGE=node:20-bookworm-slim

# 1. All dependencies (dev included: the TypeScript compiler). patches/ must be present before `npm ci`:
#    its postinstall (patch-package) applies the postgres.js queue fix to node_modules.
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY patches ./patches
RUN npm ci --no-audit --no-fund

# 2. Compile to dist/ (tsc -p tsconfig.build.json), then copy non-TypeScript assets that live in src/
#    (e.g. the built-in email templates) beside the compiled files.
FROM deps AS build
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY drizzle ./drizzle
RUN npm run build \
 && cd src && find . -type f ! -name '*.ts' -exec cp --parents {} ../dist/src/ \; \
 && test -f /app/dist/src/server.js && test -f /app/dist/src/worker.js && test -f /app/dist/src/cli.js

# 3. Production dependencies only; patch-package is a runtime dependency, so the fix is applied here too.
FROM ${NODE_IMAGE} AS prod-deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY patches ./patches
RUN npm ci --omit=dev --no-audit --no-fund \
 && grep -q 'indexOf(x, index)' node_modules/postgres/src/queue.js \
 && npm cache clean --force

# 4. Runtime: code owned by root and read-only to the app, which runs as the image's non-root `node` user.
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
# pg_dump for tenant exports (POST /api/tenant/export): bookworm's client is 15, like the server we target
# (pg_dump must be at least the server's major version). EXPORT_DIR (.data/exports) is the app's to write.
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client-15 \
 && rm -rf /var/lib/apt/lists/* \
 && pg_dump --version \
 && mkdir -p /app/.data/exports /app/.data/imports && chown -R node:node /app/.data
COPY package.json ./
COPY patches ./patches
COPY migrations ./migrations
COPY config ./config
COPY content ./content
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
USER node
EXPOSE 3000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "dist/src/server.js"]
