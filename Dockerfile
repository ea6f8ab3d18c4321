# One image for every Ringwatch component: `ringwatch agent|broker|viz|operator …`.
# Build:  docker build -t ringwatch:dev .   (README: "On Kubernetes" says how to load it)
# The build needs the crate registry only: the web UI's chart library is committed under
# viz/web/vendor/, and protoc comes vendored with the build dependencies.

FROM rust:1-bookworm AS build
WORKDIR /src
# The whole workspace (tests/ and benches/ too: the manifest names them).
COPY Cargo.toml Cargo.lock ./
COPY proto proto
COPY core core
COPY net net
COPY agent agent
COPY broker broker
COPY viz viz
COPY operator operator
COPY loadgen loadgen
COPY src src
COPY tests tests
COPY benches benches
RUN cargo build --release --locked --bin ringwatch \
 && cp target/release/ringwatch /ringwatch

FROM debian:bookworm-slim AS runtime
# Non-root, and nothing written outside the data volume: the image runs with a read-only root
# filesystem (the operator sets readOnlyRootFilesystem). TLS roots are built into the binary.
COPY --from=build /ringwatch /usr/local/bin/ringwatch
WORKDIR /var/lib/ringwatch
VOLUME /var/lib/ringwatch
ENV RINGWATCH_BROKER_DATA_DIR=/var/lib/ringwatch/broker
USER 65532:65532
# gRPC (ingest, query, peers), broker admin HTTP, viz HTTP, viz QUIC (UDP), agent metrics.
EXPOSE 9093 9097 8080 8081/udp 9102
ENTRYPOINT ["/usr/local/bin/ringwatch"]
CMD ["--help"]
