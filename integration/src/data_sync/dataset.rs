//! The data set the data-copy tests move: the SQL that creates and fills the source (fully
//! deterministic: no `random()`, no `now()`, so loading it twice gives identical rows), where
//! each table's rows belong on the destination ([`TABLES`]), the `[[sharded_tables]]` /
//! `[[omnisharded_tables]]` entries saying the same to pgdog, and the writer transactions of the
//! snapshot test ([`writer_sql`]).
//!
//! Tables (publication `pub`):
//! * `public.customers`: `serial` (int4) primary key, widened to bigint by schema sync; sharded
//!   on `id` (bigint); numeric, text[], jsonb, NULLs; a secondary index (post phase).
//! * `"Sales".orders`: bigint key, sharded on `customer_id` (int4 foreign key to customers, so
//!   co-located; some NULL, which go to shard 0); enum, smallint, a stored generated column,
//!   numeric, jsonb, timestamptz; a secondary index and the foreign key (post phase).
//! * `public.documents`: text primary key, sharded on it (varchar); TOAST-sized text, bytea.
//! * `public.devices`: uuid primary key, sharded on it; float8[], jsonb, a dropped column.
//! * `public.events`: partitioned by range (`events_2024`, `events_2025`), sharded on
//!   `device_id` (uuid) through the parent's name.
//! * `public.countries`: omnisharded (every row on every shard).
//! * `public.settings`: no sharding key and not omnisharded (every row on every shard); an
//!   identity column `GENERATED ALWAYS`.

use std::fmt::Write as _;

use super::DESTINATION;

/// How many rows the generated tables get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    /// Rows of `public.customers` (ids 1..=customers).
    pub customers: u32,
    /// Rows of `"Sales".orders`.
    pub orders: u32,
    /// Rows of `public.documents`; every tenth has a body of about 12 kB (TOAST).
    pub documents: u32,
    /// Rows of `public.devices`.
    pub devices: u32,
    /// Rows of `public.events` (split over both partitions).
    pub events: u32,
}

impl Scale {
    /// A few hundred rows per table: copied in a second or two (tests of what happens
    /// around a copy rather than of the copy).
    pub const TINY: Scale = Scale {
        customers: 200,
        orders: 600,
        documents: 100,
        devices: 100,
        events: 300,
    };

    /// A few MB: tens of CTID ranges at 64 kB per range, copied in seconds.
    pub const SMALL: Scale = Scale {
        customers: 2_000,
        orders: 12_000,
        documents: 1_500,
        devices: 1_500,
        events: 6_000,
    };
}

/// Where the rows of a table belong on the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// On the shard PostgreSQL's hash partitioning picks for `column` read as `data_type`
    /// (`bigint`, `varchar` or `uuid`, as in `[[sharded_tables]]`); NULL keys on shard 0.
    Hash {
        /// The sharding key column.
        column: &'static str,
        /// Its `data_type` in pgdog.toml.
        data_type: &'static str,
    },
    /// Every row on every shard (omnisharded tables, tables without a sharding key).
    Everywhere,
}

/// A table holding rows (partitions are listed, partitioned parents are not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSpec {
    /// Schema name (unquoted).
    pub schema: &'static str,
    /// Table name (unquoted).
    pub name: &'static str,
    /// Where its rows belong.
    pub placement: Placement,
    /// Its generated columns (not copied, recomputed by the destination).
    pub generated: &'static [&'static str],
}

impl TableSpec {
    /// `schema.name` as SQL (quoted where needed).
    pub fn sql_name(&self) -> String {
        format!("{}.{}", quote(self.schema), quote(self.name))
    }

    /// `schema.name` unquoted, as the CLI output and the admin views name it.
    pub fn label(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

const CUSTOMERS_KEY: Placement = Placement::Hash {
    column: "id",
    data_type: "bigint",
};
const ORDERS_KEY: Placement = Placement::Hash {
    column: "customer_id",
    data_type: "bigint",
};
const DOCUMENTS_KEY: Placement = Placement::Hash {
    column: "id",
    data_type: "varchar",
};
const DEVICES_KEY: Placement = Placement::Hash {
    column: "id",
    data_type: "uuid",
};
const EVENTS_KEY: Placement = Placement::Hash {
    column: "device_id",
    data_type: "uuid",
};

/// Every table with rows, in a fixed order.
pub const TABLES: [TableSpec; 8] = [
    TableSpec {
        schema: "public",
        name: "customers",
        placement: CUSTOMERS_KEY,
        generated: &[],
    },
    TableSpec {
        schema: "Sales",
        name: "orders",
        placement: ORDERS_KEY,
        generated: &["total"],
    },
    TableSpec {
        schema: "public",
        name: "documents",
        placement: DOCUMENTS_KEY,
        generated: &[],
    },
    TableSpec {
        schema: "public",
        name: "devices",
        placement: DEVICES_KEY,
        generated: &[],
    },
    TableSpec {
        schema: "public",
        name: "events_2024",
        placement: EVENTS_KEY,
        generated: &[],
    },
    TableSpec {
        schema: "public",
        name: "events_2025",
        placement: EVENTS_KEY,
        generated: &[],
    },
    TableSpec {
        schema: "public",
        name: "countries",
        placement: Placement::Everywhere,
        generated: &[],
    },
    TableSpec {
        schema: "public",
        name: "settings",
        placement: Placement::Everywhere,
        generated: &[],
    },
];

/// The spec of `schema.name`, if it is one of [`TABLES`].
pub fn table(schema: &str, name: &str) -> Option<&'static TableSpec> {
    TABLES.iter().find(|t| t.schema == schema && t.name == name)
}

/// Rows of `public.countries`.
pub const COUNTRIES: u32 = 40;
/// Rows of `public.settings`.
pub const SETTINGS: u32 = 25;

/// The `[[sharded_tables]]` and `[[omnisharded_tables]]` entries of the destination.
pub fn sharding_toml() -> String {
    let mut toml = String::new();
    for (schema, name, column, data_type) in [
        ("public", "customers", "id", "bigint"),
        ("Sales", "orders", "customer_id", "bigint"),
        ("public", "documents", "id", "varchar"),
        ("public", "devices", "id", "uuid"),
        ("public", "events", "device_id", "uuid"),
    ] {
        let _ = write!(
            toml,
            "[[sharded_tables]]\ndatabase = \"{DESTINATION}\"\nschema = \"{schema}\"\nname = \"{name}\"\ncolumn = \"{column}\"\ndata_type = \"{data_type}\"\n\n"
        );
    }
    let _ = write!(
        toml,
        "[[omnisharded_tables]]\ndatabase = \"{DESTINATION}\"\ntables = [\"public.countries\"]\n\n"
    );
    toml
}

/// The schema, rows and publication `pub` of the source.
pub fn source_sql(scale: Scale) -> String {
    let Scale {
        customers,
        orders,
        documents,
        devices,
        events,
    } = scale;
    let half = events / 2;
    format!(
        r#"
SET TimeZone = 'UTC';
CREATE SCHEMA "Sales";
CREATE TYPE "Sales".order_status AS ENUM ('new', 'paid', 'shipped', 'cancelled');

CREATE TABLE public.customers (
    id serial PRIMARY KEY,
    name text NOT NULL,
    email text NOT NULL,
    balance numeric(12,2) NOT NULL DEFAULT 0,
    tags text[],
    prefs jsonb,
    note text
);
INSERT INTO public.customers (id, name, email, balance, tags, prefs, note)
SELECT i, 'customer ' || i, 'c' || i || '@example.com', (i * 7.31)::numeric(12,2),
       CASE WHEN i % 5 = 0 THEN NULL ELSE ARRAY['t' || (i % 7), 'tag "' || (i % 11) || '"'] END,
       CASE WHEN i % 3 = 0 THEN NULL
            ELSE jsonb_build_object('level', i % 10, 'vip', i % 17 = 0, 'path', ARRAY[i, i + 1]) END,
       CASE WHEN i % 4 = 0 THEN NULL ELSE repeat('n', i % 50) || E'\ttab, newline\n' END
FROM generate_series(1, {customers}) AS i;
SELECT setval('public.customers_id_seq', {customers});
CREATE INDEX customers_email_idx ON public.customers (email);

CREATE TABLE "Sales".orders (
    id bigint PRIMARY KEY,
    customer_id integer REFERENCES public.customers (id),
    status "Sales".order_status NOT NULL DEFAULT 'new',
    amount numeric(14,4) NOT NULL,
    quantity smallint NOT NULL,
    total numeric GENERATED ALWAYS AS (amount * quantity) STORED,
    items jsonb,
    placed_at timestamptz NOT NULL,
    note text
);
INSERT INTO "Sales".orders (id, customer_id, status, amount, quantity, items, placed_at, note)
SELECT i,
       CASE WHEN i % 97 = 0 THEN NULL ELSE (i * 31 % {customers}) + 1 END,
       (ARRAY['new', 'paid', 'shipped', 'cancelled'])[i % 4 + 1]::"Sales".order_status,
       (i % 1000) * 1.2345 - 100, (i % 20 + 1)::smallint,
       CASE WHEN i % 6 = 0 THEN NULL
            ELSE jsonb_build_array(jsonb_build_object('sku', 'S' || (i % 300), 'n', i % 9)) END,
       timestamptz '2024-01-01 00:00:00+00' + i * interval '37 minutes',
       CASE WHEN i % 2 = 0 THEN NULL ELSE 'order note ' || md5(i::text) END
FROM generate_series(1, {orders}) AS i;
CREATE INDEX orders_customer_idx ON "Sales".orders (customer_id);

CREATE TABLE public.documents (
    id text PRIMARY KEY,
    title varchar(100),
    body text,
    raw bytea,
    version integer NOT NULL DEFAULT 1
);
INSERT INTO public.documents (id, title, body, raw, version)
SELECT 'doc-' || i, 'Title ' || i,
       CASE WHEN i % 10 = 0
            THEN (SELECT string_agg(md5(i::text || '/' || j::text), ' ') FROM generate_series(1, 380) AS j)
            WHEN i % 10 = 1 THEN NULL
            ELSE 'short body ' || i END,
       CASE WHEN i % 9 = 0 THEN NULL ELSE decode(md5(i::text) || md5((i + 1)::text), 'hex') END,
       1
FROM generate_series(1, {documents}) AS i;

CREATE TABLE public.devices (
    id uuid PRIMARY KEY,
    serial_no bigint NOT NULL,
    legacy text,
    attrs jsonb,
    readings double precision[],
    seen_at timestamp,
    active boolean
);
INSERT INTO public.devices (id, serial_no, legacy, attrs, readings, seen_at, active)
SELECT md5('dev-' || i)::uuid, i * 1000003, 'legacy ' || i,
       jsonb_build_object('model', 'M' || (i % 13), 'fw', jsonb_build_array(i % 3, i % 5)),
       CASE WHEN i % 8 = 0 THEN NULL ELSE ARRAY[i / 3.0, -i * 0.125, 1e-7 * i]::double precision[] END,
       CASE WHEN i % 7 = 0 THEN NULL ELSE timestamp '2023-05-01 12:00:00' + i * interval '1 hour' END,
       CASE WHEN i % 11 = 0 THEN NULL ELSE i % 2 = 0 END
FROM generate_series(1, {devices}) AS i;
ALTER TABLE public.devices DROP COLUMN legacy;

CREATE TABLE public.events (
    id bigint NOT NULL,
    device_id uuid NOT NULL,
    at timestamptz NOT NULL,
    kind text NOT NULL,
    payload jsonb,
    PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
CREATE TABLE public.events_2024 PARTITION OF public.events
    FOR VALUES FROM ('2024-01-01 00:00:00+00') TO ('2025-01-01 00:00:00+00');
CREATE TABLE public.events_2025 PARTITION OF public.events
    FOR VALUES FROM ('2025-01-01 00:00:00+00') TO ('2026-01-01 00:00:00+00');
INSERT INTO public.events (id, device_id, at, kind, payload)
SELECT i, md5('dev-' || (i % {devices} + 1))::uuid,
       CASE WHEN i <= {half} THEN timestamptz '2024-01-01 00:00:00+00' + i * interval '41 minutes'
            ELSE timestamptz '2025-01-01 00:00:00+00' + i * interval '23 minutes' END,
       (ARRAY['boot', 'ping', 'error'])[i % 3 + 1],
       CASE WHEN i % 4 = 0 THEN NULL ELSE jsonb_build_object('seq', i, 'ok', i % 5 <> 0) END
FROM generate_series(1, {events}) AS i;

CREATE TABLE public.countries (
    code text PRIMARY KEY,
    name text NOT NULL,
    population bigint
);
INSERT INTO public.countries
SELECT 'C' || i, 'Country ' || i, CASE WHEN i % 6 = 0 THEN NULL ELSE i * 1000000 END
FROM generate_series(0, {countries_last}) AS i;

CREATE TABLE public.settings (
    id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    value text,
    updated_at timestamptz
);
INSERT INTO public.settings OVERRIDING SYSTEM VALUE
SELECT i, CASE WHEN i % 5 = 0 THEN NULL ELSE 'value ' || i END,
       timestamptz '2024-06-01 00:00:00+00' + i * interval '1 day'
FROM generate_series(1, {SETTINGS}) AS i;
SELECT setval(pg_get_serial_sequence('public.settings', 'id'), {SETTINGS});

CREATE PUBLICATION pub FOR TABLE public.customers, "Sales".orders, public.documents,
    public.devices, public.events, public.countries, public.settings;
ANALYZE;
"#,
        countries_last = COUNTRIES - 1,
    )
}

/// The id range of the orders the snapshot test's writer inserts: `WRITER_ORDER_BASE + i`.
pub const WRITER_ORDER_BASE: i64 = 9_000_000;

/// The writes of writer transaction `i` (1, 2, ...), without BEGIN/COMMIT: an order inserted
/// (id [`WRITER_ORDER_BASE`] + i, a marker of the transaction), a customer, a document (TOAST)
/// and a country (omnisharded) updated, a device deleted (once) and an event inserted.
/// Deterministic, so replaying 1..=p on a fresh load gives the source as of transaction p.
pub fn writer_sql(i: u64, scale: Scale) -> String {
    let customer = i * 37 % u64::from(scale.customers) + 1;
    let document = i * 13 % u64::from(scale.documents) + 1;
    let device = i * 7 % u64::from(scale.devices) + 1;
    let country = i % u64::from(COUNTRIES);
    let order = WRITER_ORDER_BASE + i as i64;
    format!(
        "INSERT INTO \"Sales\".orders (id, customer_id, status, amount, quantity, items, placed_at, note) \
         VALUES ({order}, {customer}, 'paid', {i}.5, 2, '[{{\"w\": {i}}}]', \
         timestamptz '2025-03-01 00:00:00+00' + {i} * interval '1 second', 'writer');\n\
         UPDATE public.customers SET balance = balance + 1, note = 'written by {i}' WHERE id = {customer};\n\
         UPDATE public.documents SET version = version + 1, body = coalesce(body, '') || ' w{i}' \
         WHERE id = 'doc-{document}';\n\
         UPDATE public.countries SET population = coalesce(population, 0) + {i} WHERE code = 'C{country}';\n\
         DELETE FROM public.devices WHERE id = md5('dev-{device}')::uuid;\n\
         INSERT INTO public.events (id, device_id, at, kind, payload) \
         VALUES ({order}, md5('dev-{device}')::uuid, \
         timestamptz '2025-07-01 00:00:00+00' + {i} * interval '1 minute', 'writer', NULL);\n"
    )
}

/// An identifier quoted when it is not all lower-case letters, digits and underscores.
pub fn quote(name: &str) -> String {
    let plain = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_config() {
        assert_eq!(TABLES[1].sql_name(), "\"Sales\".orders");
        assert_eq!(TABLES[1].label(), "Sales.orders");
        assert_eq!(
            table("public", "events_2025").map(|t| t.placement),
            Some(EVENTS_KEY)
        );
        let toml = sharding_toml();
        assert_eq!(toml.matches("[[sharded_tables]]").count(), 5);
        assert!(toml.contains("tables = [\"public.countries\"]"));
        assert!(writer_sql(3, Scale::SMALL).contains("9000003"));
    }
}
