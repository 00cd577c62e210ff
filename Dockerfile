# Builds pgdog and runs it with its config mounted at /etc/pgdog:
#   docker build -t pgdog .
#   docker run -p 6432:6432 -v $PWD/pgdog.toml:/etc/pgdog/pgdog.toml -v $PWD/users.toml:/etc/pgdog/users.toml pgdog
FROM rust:1-bookworm AS build
# pg_query generates its bindings with bindgen, which needs libclang.
RUN apt-get update && apt-get install -y --no-install-recommends libclang-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p pgdog --bin pgdog

FROM debian:bookworm-slim
# pg_dump (PostgreSQL 15 client) for schema sync; for newer source servers install their
# pg_dump too and point [replication] pg_dump_path at it.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates postgresql-client \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --no-create-home pgdog
COPY --from=build /src/target/release/pgdog /usr/local/bin/pgdog
USER pgdog
EXPOSE 6432 9090
ENTRYPOINT ["pgdog", "--config", "/etc/pgdog/pgdog.toml", "--users", "/etc/pgdog/users.toml"]
