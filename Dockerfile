# keel-worker in a container (docker-compose.yml builds it as keel:local).
#
# The build stage is a plain Debian machine set up the way the README sets one up:
# tools/install-deps (its "build" group: compiler, nghttp2, OpenSSL, protobuf-c, libraries, npm for the pinned
# protos) and make. The runtime stage holds the two binaries and the shared libraries they link.
# The context is the checkout (see .dockerignore: build/ and node_modules/ stay out).

FROM debian:bookworm AS build
WORKDIR /src/keel
COPY tools/install-deps tools/install-deps
RUN tools/install-deps build && rm -rf /var/lib/apt/lists/*
COPY . .
# fetch-protos downloads the pinned Temporal API and OTLP protos (npm pack, checked by sha256)
# into build/.
RUN make all

FROM debian:bookworm-slim
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      libnghttp2-14 libssl3 libprotobuf-c1 libcjson1 libcurl4 libpq5 libmicrohttpd12 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin keel
COPY --from=build /src/keel/build/bin/keel-worker /src/keel/build/bin/keelctl /usr/local/bin/
COPY tools/search-attributes.txt /usr/local/share/keel/search-attributes.txt
USER keel
# Configuration comes from the environment (docs/operations.md): TEMPORAL_ADDRESS, DATABASE_URL,
# OPENAI_BASE_URL, OPENAI_API_KEY, KEEL_MODEL, KEEL_MODEL_STRONG, KEEL_TASK_QUEUE, ...
# SIGTERM (docker stop) drains the worker: see "keel-worker" in docs/operations.md.
STOPSIGNAL SIGTERM
ENTRYPOINT ["keel-worker"]
