# script-operator container image: the in-cluster binary on distroless.
#
#   docker buildx build --platform linux/amd64,linux/arm64 -t IMAGE .
#
# Stage 1 runs on the build machine's own platform and cross-compiles for the target platform
# (deno compile --target), so a multi-arch build needs no emulation. Stage 2 only copies files.

FROM --platform=$BUILDPLATFORM denoland/deno:2.9.6 AS build
ARG TARGETARCH
WORKDIR /src
# Dependencies first: this layer is reused until deno.json or deno.lock change.
COPY deno.json deno.lock ./
RUN deno install --frozen-lockfile
COPY main.ts ./
COPY src/ src/
COPY scripts/ scripts/
COPY deploy/compile.ts deploy/permissions.ts deploy/
# The image's flavour: in-cluster credentials only, no subprocesses (deploy/permissions.ts).
RUN case "$TARGETARCH" in \
      amd64) target=x86_64-unknown-linux-gnu ;; \
      arm64) target=aarch64-unknown-linux-gnu ;; \
      *) echo "unsupported TARGETARCH '$TARGETARCH': use linux/amd64 or linux/arm64" >&2; exit 1 ;; \
    esac \
    && deno task compile --in-cluster --target "$target" --output /out/script-operator

# glibc and libgcc_s (which the Deno runtime links against), CA certificates, no shell.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/script-operator /script-operator
# The image's nonroot user; deploy/deployment.yaml runs as the same uid/gid.
USER 65532:65532
ENTRYPOINT ["/script-operator"]
