# syntax=docker/dockerfile:1
# The canary-xds image: the release binary alone on distroless, as a numeric non-root user.
#   docker build -t registry.example.com/platform/canary-xds:0.1.0 .
# deploy/kubernetes runs it (docs/deploy.md); tests/deploy.rs checks this file statically.

# Build: the toolchain the project is tested with, on the Debian release the runtime image is
# built from (the binary links glibc dynamically). --locked: exactly Cargo.lock's versions.
FROM rust:1.95-bookworm AS build
WORKDIR /src
# .dockerignore lets in only what the build reads: Cargo.toml, Cargo.lock, src/, benches/ (Cargo
# wants the bench targets the manifest names).
COPY . .
# The registry and target/ are cache mounts, kept between builds but not in any layer, so the
# binary is copied out of target/ in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin canary-xds \
    && cp target/release/canary-xds /canary-xds

# Run: glibc, libgcc and CA certificates, no shell, no package manager. Pin by digest in
# production.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /canary-xds /usr/local/bin/canary-xds
# distroless's nonroot user, by number so that the kubelet can check runAsNonRoot.
USER 65532:65532
# xDS and admin, as the Deployment binds them (serve keeps both on loopback unless told).
EXPOSE 18000 8877
ENTRYPOINT ["/usr/local/bin/canary-xds"]
CMD ["--help"]
