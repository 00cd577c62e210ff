//! Tests of the planner against a four-shard database built from a config text.

use pg_query::ParserOptions;

use super::*;
use crate::router::route::{Aggregate, AggregateFunction, CopyFormat, SortKey};
use crate::router::sharding::{shard_of, KeyValue};

const SHARDS: usize = 4;

fn config(shards: usize) -> String {
    let mut text = String::new();
    for shard in 0..shards {
        text.push_str(&format!("[[databases]]\nname = \"db\"\nshard = {shard}\n"));
    }
    text.push_str(
        r#"
[[sharded_tables]]
database = "db"
name = "users"
column = "id"
data_type = "bigint"

[[sharded_tables]]
database = "db"
name = "orders"
column = "user_id"

[[sharded_tables]]
database = "db"
name = "devices"
column = "uid"
data_type = "uuid"

[[sharded_tables]]
database = "db"
name = "docs"
column = "tenant"
data_type = "varchar"

[[sharded_tables]]
database = "db"
name = "regions"
column = "code"
[[sharded_tables.mapping]]
values = [1, 2]
shard = 0
[[sharded_tables.mapping]]
values = [3]
shard = 1
[[sharded_tables.mapping]]
start = 10
end = 20
shard = 2
[[sharded_tables.mapping]]
start = 20
shard = 3

[[sharded_tables]]
database = "db"
name = "countries"
column = "name"
data_type = "varchar"
mapping = [ { values = ["ca", "us"], shard = 1 }, { shard = 3 } ]

[[sharded_tables]]
database = "db"
column = "tenant_id"

[[omnisharded_tables]]
database = "db"
tables = ["settings", "currencies"]
"#,
    );
    text
}

fn schema_with(shards: usize) -> ShardingSchema {
    let config = pgdog_config::Config::from_str(&config(shards), "pgdog.toml").unwrap();
    ShardingSchema::new(&config, "db")
}

fn schema() -> ShardingSchema {
    schema_with(SHARDS)
}

fn int(value: i64) -> usize {
    shard_of(&KeyValue::Int(value), SHARDS)
}

fn text(value: &str) -> usize {
    shard_of(&KeyValue::Text(value), SHARDS)
}

/// Two integers on different shards, and a third on the same shard as the first.
fn keys() -> (i64, i64, i64) {
    let a = 1;
    let b = (2..).find(|&v| int(v) != int(a)).unwrap();
    let c = (b + 1..).find(|&v| int(v) == int(a)).unwrap();
    (a, b, c)
}

fn only(sql: &str) -> Statement {
    let analysis = Analysis::analyze(sql, &schema());
    assert_eq!(analysis.statements().len(), 1, "{sql}");
    analysis.statements()[0].clone()
}

#[track_caller]
fn r(sql: &str) -> Route {
    route_params(sql, &Params::NONE)
}

#[track_caller]
fn route_params(sql: &str, params: &Params<'_>) -> Route {
    match only(sql).route(params, None, &schema()) {
        Ok(route) => route,
        Err(error) => panic!("{sql}: {error:?}"),
    }
}

#[track_caller]
fn shards(sql: &str) -> Shards {
    r(sql).shards
}

#[track_caller]
fn err(sql: &str) -> ErrorResponse {
    error_params(sql, &Params::NONE)
}

#[track_caller]
fn error_params(sql: &str, params: &Params<'_>) -> ErrorResponse {
    match only(sql).route(params, None, &schema()) {
        Ok(route) => panic!("{sql}: expected an error, got {route:?}"),
        Err(error) => error,
    }
}

#[track_caller]
fn unsupported(sql: &str, part: &str) {
    let error = err(sql);
    assert_eq!(error.code, "0A000", "{sql}: {error:?}");
    assert!(error.message.contains(part), "{sql}: {}", error.message);
}

#[track_caller]
fn parses(sql: &str) {
    assert!(
        pg_query::parse(sql, ParserOptions::DEFAULT).is_ok(),
        "rewrite does not parse: {sql}"
    );
}

fn text_params<'a>(values: &'a [Option<&'a [u8]>]) -> Params<'a> {
    Params {
        values,
        formats: &[],
        types: &[],
    }
}

// ---------------------------------------------------------------- keys in WHERE

#[test]
fn equality_with_constants_and_casts() {
    let (a, _, _) = keys();
    for sql in [
        format!("SELECT * FROM users WHERE id = {a}"),
        format!("SELECT * FROM users WHERE {a} = id"),
        format!("SELECT * FROM users WHERE id = '{a}'"),
        format!("SELECT * FROM users WHERE id = '{a}'::bigint"),
        format!("SELECT * FROM users WHERE id = CAST({a} AS int)"),
        format!("select * from USERS where ID = {a}"),
        format!("SELECT * FROM users WHERE id = {a} AND name = 'x'"),
        format!("SELECT * FROM users WHERE name = 'x' AND (id = {a})"),
    ] {
        assert_eq!(shards(&sql), Shards::One(int(a)), "{sql}");
    }
    assert_eq!(
        shards("SELECT * FROM users WHERE id = -5"),
        Shards::One(int(-5))
    );
}

#[test]
fn parameters_text_and_binary() {
    let (a, _, _) = keys();
    let sql = "SELECT * FROM users WHERE id = $1";
    let text_value = a.to_string();
    let values = [Some(text_value.as_bytes())];
    assert_eq!(
        route_params(sql, &text_params(&values)).shards,
        Shards::One(int(a))
    );

    for bytes in [
        (a as i16).to_be_bytes().to_vec(),
        (a as i32).to_be_bytes().to_vec(),
        a.to_be_bytes().to_vec(),
    ] {
        let values = [Some(&bytes[..])];
        let params = Params {
            values: &values,
            formats: &[1],
            types: &[],
        };
        assert_eq!(route_params(sql, &params).shards, Shards::One(int(a)));
    }
    // A binary int4 declared as such.
    let bytes = (a as i32).to_be_bytes();
    let values = [Some(&bytes[..])];
    let params = Params {
        values: &values,
        formats: &[1],
        types: &[23],
    };
    assert_eq!(
        route_params("SELECT * FROM users WHERE id = $1::bigint", &params).shards,
        Shards::One(int(a))
    );
    // Binary of an odd length, or of another type: every shard.
    let odd = [Some(&[1u8, 2, 3][..])];
    let params = Params {
        values: &odd,
        formats: &[1],
        types: &[],
    };
    assert_eq!(route_params(sql, &params).shards, Shards::All);
    let numeric = Params {
        values: &values,
        formats: &[1],
        types: &[1700],
    };
    assert_eq!(route_params(sql, &numeric).shards, Shards::All);
    // Per-parameter formats.
    let second = a.to_be_bytes();
    let values = [Some(&b"x"[..]), Some(&second[..])];
    let params = Params {
        values: &values,
        formats: &[0, 1],
        types: &[],
    };
    assert_eq!(
        route_params("SELECT * FROM users WHERE name = $1 AND id = $2", &params).shards,
        Shards::One(int(a))
    );
}

#[test]
fn null_bad_and_missing_values() {
    // NULL matches nothing: any one shard says so.
    assert_eq!(shards("SELECT * FROM users WHERE id = NULL"), Shards::Any);
    let values = [None];
    assert_eq!(
        route_params("SELECT * FROM users WHERE id = $1", &text_params(&values)).shards,
        Shards::Any
    );
    // Not a bigint: every shard (PostgreSQL reports the error).
    assert_eq!(shards("SELECT * FROM users WHERE id = 'abc'"), Shards::All);
    assert_eq!(shards("SELECT * FROM users WHERE id = 1.5"), Shards::All);
    assert_eq!(
        shards("SELECT * FROM users WHERE id = 99999999999999999999"),
        Shards::All
    );
    let values = [Some(&b"\xff\xfe"[..])];
    assert_eq!(
        route_params("SELECT * FROM users WHERE id = $1", &text_params(&values)).shards,
        Shards::All
    );
    // No such parameter.
    assert_eq!(shards("SELECT * FROM users WHERE id = $3"), Shards::All);
}

#[test]
fn in_lists_and_any() {
    let (a, b, c) = keys();
    let two = Shards::from_list(vec![int(a), int(b)], SHARDS);
    assert_eq!(
        shards(&format!("SELECT * FROM users WHERE id IN ({a}, {c})")),
        Shards::One(int(a))
    );
    assert_eq!(
        shards(&format!("SELECT * FROM users WHERE id IN ({a}, {b})")),
        two
    );
    assert_eq!(
        shards(&format!("SELECT * FROM users WHERE id IN ({a}, NULL)")),
        Shards::One(int(a))
    );
    assert_eq!(
        shards("SELECT * FROM users WHERE id IN (1, name)"),
        Shards::All
    );
    assert_eq!(
        shards(&format!("SELECT * FROM users WHERE id NOT IN ({a})")),
        Shards::All
    );
    assert_eq!(
        shards(&format!(
            "SELECT * FROM users WHERE id = ANY('{{{a},{b}}}')"
        )),
        two
    );
    assert_eq!(
        shards(&format!(
            "SELECT * FROM users WHERE id = ANY('{{{a},{c}}}'::bigint[])"
        )),
        Shards::One(int(a))
    );
    assert_eq!(
        shards(&format!(
            "SELECT * FROM users WHERE id = ANY(ARRAY[{a}, {b}])"
        )),
        two
    );
    assert_eq!(
        shards("SELECT * FROM users WHERE id = ANY('{}')"),
        Shards::Any
    );
    assert_eq!(
        shards("SELECT * FROM users WHERE id = ANY('{1,')"),
        Shards::All
    );
    assert_eq!(
        shards("SELECT * FROM users WHERE id <> ALL('{1}')"),
        Shards::All
    );

    let a_text = a.to_string();
    let b_text = b.to_string();
    let values = [Some(a_text.as_bytes()), Some(b_text.as_bytes())];
    assert_eq!(
        route_params(
            "SELECT * FROM users WHERE id IN ($1, $2)",
            &text_params(&values)
        )
        .shards,
        two
    );

    // An array parameter in text format.
    let array = format!("{{{a}, {c}, NULL}}");
    let values = [Some(array.as_bytes())];
    let sql = "SELECT * FROM users WHERE id = ANY($1::bigint[])";
    assert_eq!(
        route_params(sql, &text_params(&values)).shards,
        Shards::One(int(a))
    );
    let values = [None];
    assert_eq!(route_params(sql, &text_params(&values)).shards, Shards::Any);

    // ...and in binary format (int8 and int4 elements).
    let mut binary = Vec::new();
    binary.extend(1i32.to_be_bytes());
    binary.extend(1i32.to_be_bytes());
    binary.extend(20u32.to_be_bytes());
    binary.extend(3i32.to_be_bytes());
    binary.extend(1i32.to_be_bytes());
    for value in [a, b] {
        binary.extend(8i32.to_be_bytes());
        binary.extend(value.to_be_bytes());
    }
    binary.extend((-1i32).to_be_bytes());
    let values = [Some(&binary[..])];
    let params = Params {
        values: &values,
        formats: &[1],
        types: &[1016],
    };
    assert_eq!(route_params(sql, &params).shards, two);
    let mut int4 = Vec::new();
    int4.extend(1i32.to_be_bytes());
    int4.extend(0i32.to_be_bytes());
    int4.extend(23u32.to_be_bytes());
    int4.extend(1i32.to_be_bytes());
    int4.extend(1i32.to_be_bytes());
    int4.extend(4i32.to_be_bytes());
    int4.extend((a as i32).to_be_bytes());
    let values = [Some(&int4[..])];
    let params = Params {
        values: &values,
        formats: &[1],
        types: &[],
    };
    assert_eq!(route_params(sql, &params).shards, Shards::One(int(a)));
    let broken = [Some(&int4[..int4.len() - 1])];
    let params = Params {
        values: &broken,
        formats: &[1],
        types: &[],
    };
    assert_eq!(route_params(sql, &params).shards, Shards::All);
}

#[test]
fn and_or_not() {
    let (a, b, c) = keys();
    let two = Shards::from_list(vec![int(a), int(b)], SHARDS);
    assert_eq!(
        shards(&format!("SELECT * FROM users WHERE id = {a} OR id = {b}")),
        two
    );
    assert_eq!(
        shards(&format!("SELECT * FROM users WHERE id = {a} OR id = {c}")),
        Shards::One(int(a))
    );
    assert_eq!(
        shards(&format!("SELECT * FROM users WHERE id = {a} OR name = 'x'")),
        Shards::All
    );
    // Contradictory keys: no row, any shard.
    assert_eq!(
        shards(&format!("SELECT * FROM users WHERE id = {a} AND id = {b}")),
        Shards::Any
    );
    assert_eq!(
        shards(&format!(
            "SELECT * FROM users WHERE id IN ({a}, {b}) AND id = {b}"
        )),
        Shards::One(int(b))
    );
    assert_eq!(
        shards(&format!(
            "SELECT * FROM users WHERE (id = {a} OR id = {b}) AND (name = 'x' OR id = {a})"
        )),
        two
    );
    assert_eq!(
        shards(&format!("SELECT * FROM users WHERE NOT id = {a}")),
        Shards::All
    );
    assert_eq!(
        shards(&format!("SELECT * FROM users WHERE id > {a}")),
        Shards::All
    );
    assert_eq!(shards("SELECT * FROM users"), Shards::All);
}

#[test]
fn aliases_qualified_names_and_joins() {
    let (a, _, _) = keys();
    let one = Shards::One(int(a));
    for sql in [
        format!("SELECT * FROM users u WHERE u.id = {a}"),
        format!("SELECT * FROM users WHERE users.id = {a}"),
        format!("SELECT * FROM public.users WHERE public.users.id = {a}"),
        format!("SELECT * FROM users u JOIN orders o ON o.user_id = u.id WHERE u.id = {a}"),
        format!("SELECT * FROM users u JOIN orders o ON o.user_id = u.id WHERE o.user_id = {a}"),
        format!("SELECT * FROM users u JOIN orders o ON o.user_id = u.id AND u.id = {a}"),
        format!("SELECT * FROM users u, orders o WHERE o.user_id = u.id AND user_id = {a}"),
        format!("SELECT * FROM users JOIN settings s ON true WHERE id = {a}"),
        format!("SELECT * FROM users u WHERE id = {a}"),
        format!("SELECT * FROM users u WHERE u.id = {a} AND u.id IN (SELECT user_id FROM orders)"),
    ] {
        assert_eq!(shards(&sql), one, "{sql}");
    }
    // The alias hides the table name; an unknown qualifier or an outer join's ON restricts
    // nothing.
    for sql in [
        format!("SELECT * FROM users u WHERE users.id = {a}"),
        format!("SELECT * FROM users u WHERE x.id = {a}"),
        format!("SELECT * FROM users a JOIN users b ON a.id = b.id WHERE id = {a}"),
        format!("SELECT * FROM users WHERE other.users.id = {a}"),
    ] {
        assert_eq!(shards(&sql), Shards::All, "{sql}");
    }
}

#[test]
fn joins_across_shards_must_be_on_the_sharding_keys() {
    for sql in [
        "SELECT count(*) FROM users u JOIN orders o ON o.user_id = u.id",
        "SELECT * FROM users u, orders o WHERE u.id = o.user_id AND o.total > 5",
        "SELECT * FROM users a JOIN users b USING (id)",
        "SELECT * FROM users u JOIN orders o ON u.id = o.user_id JOIN users w ON w.id = o.user_id",
        "SELECT * FROM users u JOIN settings s ON s.k = u.name",
    ] {
        assert_eq!(shards(sql), Shards::All, "{sql}");
    }
    for sql in [
        "SELECT count(*) FROM users a JOIN users b ON a.name = b.name",
        "SELECT * FROM users u LEFT JOIN orders o ON o.user_id = 5",
        "SELECT * FROM users u, orders o",
        "SELECT * FROM users u JOIN orders o ON u.id = o.user_id JOIN users w ON w.name = u.name",
        "SELECT * FROM users u JOIN (SELECT user_id FROM orders) o ON o.user_id = u.id",
    ] {
        unsupported(sql, "join");
    }
}

#[test]
fn text_uuid_and_mapped_keys() {
    assert_eq!(
        shards("SELECT * FROM docs WHERE tenant = 'acme'"),
        Shards::One(text("acme"))
    );
    let uuid = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
    let key = KeyValue::parse(crate::router::sharding::DataType::Uuid, uuid).unwrap();
    let expected = Shards::One(shard_of(&key, SHARDS));
    assert_eq!(
        shards(&format!("SELECT * FROM devices WHERE uid = '{uuid}'")),
        expected
    );
    assert_eq!(
        shards(&format!(
            "SELECT * FROM devices WHERE uid = '{{{}}}'::uuid",
            uuid.to_uppercase()
        )),
        expected
    );
    let KeyValue::Uuid(bytes) = key else { panic!() };
    let values = [Some(&bytes[..])];
    let params = Params {
        values: &values,
        formats: &[1],
        types: &[2950],
    };
    assert_eq!(
        route_params("SELECT * FROM devices WHERE uid = $1", &params).shards,
        expected
    );
    let values = [Some(uuid.as_bytes())];
    assert_eq!(
        route_params(
            "SELECT * FROM devices WHERE uid = $1",
            &text_params(&values)
        )
        .shards,
        expected
    );
    let values = [Some(&b"acme"[..])];
    let params = Params {
        values: &values,
        formats: &[1],
        types: &[25],
    };
    assert_eq!(
        route_params("SELECT * FROM docs WHERE tenant = $1", &params).shards,
        Shards::One(text("acme"))
    );
    assert_eq!(
        shards("SELECT * FROM devices WHERE uid = 'nope'"),
        Shards::All
    );

    // List, range and no match (no default rule: every shard for reads).
    for (code, shard) in [(1, 0), (2, 0), (3, 1), (10, 2), (19, 2), (20, 3), (1000, 3)] {
        assert_eq!(
            shards(&format!("SELECT * FROM regions WHERE code = {code}")),
            Shards::One(shard),
            "{code}"
        );
    }
    assert_eq!(shards("SELECT * FROM regions WHERE code = 5"), Shards::All);
    assert_eq!(
        shards("SELECT * FROM regions WHERE code IN (1, 3)"),
        Shards::Many(vec![0, 1])
    );
    // Default rule.
    assert_eq!(
        shards("SELECT * FROM countries WHERE name = 'us'"),
        Shards::One(1)
    );
    assert_eq!(
        shards("SELECT * FROM countries WHERE name = 'fr'"),
        Shards::One(3)
    );
}

#[test]
fn tables_sharded_by_column_name() {
    let (a, _, _) = keys();
    assert_eq!(
        shards(&format!("SELECT * FROM events WHERE tenant_id = {a}")),
        Shards::One(int(a))
    );
    assert_eq!(
        shards(&format!(
            "SELECT * FROM events e JOIN logs l USING (x) WHERE e.tenant_id = {a}"
        )),
        Shards::One(int(a))
    );
    assert_eq!(
        shards(&format!("SELECT * FROM events, logs WHERE tenant_id = {a}")),
        Shards::One(int(a))
    );
    // With a table the config names, an unqualified tenant_id may be that table's column:
    // no restriction, and a cross join of sharded tables cannot run across shards.
    unsupported(
        &format!("SELECT * FROM users, events WHERE tenant_id = {a}"),
        "join",
    );
    assert_eq!(
        shards(&format!("SELECT * FROM events WHERE other_id = {a}")),
        Shards::All
    );
}

#[test]
fn tables_that_need_no_particular_shard() {
    for sql in [
        "SELECT 1",
        "SELECT now()",
        "SELECT * FROM settings",
        "SELECT * FROM settings s JOIN currencies c ON c.id = s.currency",
        "SELECT * FROM pg_catalog.pg_class",
        "SELECT * FROM pg_stat_activity",
        "SELECT * FROM information_schema.tables",
        "SELECT count(*) FROM settings",
        "SELECT 1 UNION SELECT 2",
        "WITH x AS (SELECT 1) SELECT * FROM x",
        "VALUES (1), (2)",
        "SHOW search_path",
    ] {
        assert_eq!(shards(sql), Shards::Any, "{sql}");
    }
    let (a, _, _) = keys();
    assert_eq!(
        shards(&format!(
            "SELECT * FROM users u JOIN settings s ON true WHERE u.id = {a}"
        )),
        Shards::One(int(a))
    );
    assert_eq!(shards("SELECT * FROM unknown_table"), Shards::All);
}

// ---------------------------------------------------------------- INSERT

#[test]
fn insert_single_rows() {
    let (a, _, c) = keys();
    assert_eq!(
        shards(&format!("INSERT INTO users (id, name) VALUES ({a}, 'x')")),
        Shards::One(int(a))
    );
    assert_eq!(
        shards(&format!(
            "INSERT INTO users (name, id) VALUES ('x', '{a}'::bigint) RETURNING *"
        )),
        Shards::One(int(a))
    );
    let value = a.to_string();
    let values = [Some(&b"x"[..]), Some(value.as_bytes())];
    let route = route_params(
        "INSERT INTO users (name, id) VALUES ($1, $2::bigint)",
        &text_params(&values),
    );
    assert_eq!(route.shards, Shards::One(int(a)));
    assert!(route.split.is_empty());
    assert!(!route.read);
    let route = r(&format!("INSERT INTO users (id) VALUES ({a}), ({c})"));
    assert_eq!(route.shards, Shards::One(int(a)));
    assert!(route.split.is_empty());
    // NULL key under hash sharding: PostgreSQL's partition for NULL, 0.
    assert_eq!(
        shards("INSERT INTO users (id) VALUES (NULL)"),
        Shards::One(0)
    );
    assert_eq!(
        shards("INSERT INTO docs (tenant, body) VALUES ('acme', 'x')"),
        Shards::One(text("acme"))
    );
    assert_eq!(
        shards("INSERT INTO regions (code) VALUES (15)"),
        Shards::One(2)
    );
    assert_eq!(
        shards("INSERT INTO countries (name) VALUES ('fr')"),
        Shards::One(3)
    );
    assert_eq!(
        shards("INSERT INTO countries (name) VALUES (NULL)"),
        Shards::One(3)
    );
    assert_eq!(
        shards(&format!(
            "INSERT INTO users (id, name) VALUES ({a}, 'x') ON CONFLICT (id) DO UPDATE SET name = excluded.name"
        )),
        Shards::One(int(a))
    );
}

#[test]
fn insert_split_by_shard() {
    let (a, b, c) = keys();
    let route = r(&format!(
        "INSERT INTO users (id, name) VALUES ({a}, 'a'), ({b}, 'b'), ({c}, 'c') \
         ON CONFLICT (id) DO NOTHING RETURNING id"
    ));
    assert_eq!(
        route.shards,
        Shards::from_list(vec![int(a), int(b)], SHARDS)
    );
    assert_eq!(route.split.len(), 2);
    let first = route.split.iter().find(|s| s.shard == int(a)).unwrap();
    let second = route.split.iter().find(|s| s.shard == int(b)).unwrap();
    assert_eq!(
        first.sql,
        format!(
            "INSERT INTO users (id, name) VALUES ({a}, 'a'), ({c}, 'c') ON CONFLICT (id) DO NOTHING RETURNING id"
        )
    );
    assert!(second.sql.contains(&format!("({b}, 'b')")));
    assert!(first.params.is_empty());
    for part in &route.split {
        parses(&part.sql);
    }
}

#[test]
fn insert_split_renumbers_parameters() {
    let (a, b, c) = keys();
    let (a, b, c) = (a.to_string(), b.to_string(), c.to_string());
    let values = [
        Some(a.as_bytes()),
        Some(&b"first"[..]),
        Some(b.as_bytes()),
        Some(&b"second"[..]),
        Some(c.as_bytes()),
        Some(&b"third"[..]),
        Some(&b"tag"[..]),
    ];
    let route = route_params(
        "INSERT INTO users (id, name, tag) VALUES ($1, $2, $7), ($3::bigint, $4, $7), ($5, $6, $7) \
         ON CONFLICT (id) DO UPDATE SET tag = $7 RETURNING id",
        &text_params(&values),
    );
    assert_eq!(route.split.len(), 2);
    let (a, b): (i64, i64) = (a.parse().unwrap(), b.parse().unwrap());
    let first = route.split.iter().find(|s| s.shard == int(a)).unwrap();
    let second = route.split.iter().find(|s| s.shard == int(b)).unwrap();
    assert_eq!(
        first.sql,
        "INSERT INTO users (id, name, tag) VALUES ($1, $2, $3), ($4, $5, $3) ON CONFLICT (id) DO UPDATE SET tag = $3 RETURNING id"
    );
    assert_eq!(first.params, vec![0, 1, 6, 4, 5]);
    assert_eq!(
        second.sql,
        "INSERT INTO users (id, name, tag) VALUES ($1::bigint, $2, $3) ON CONFLICT (id) DO UPDATE SET tag = $3 RETURNING id"
    );
    assert_eq!(second.params, vec![2, 3, 6]);
    for part in &route.split {
        parses(&part.sql);
    }
}

#[test]
fn insert_without_column_list() {
    let (a, b, _) = keys();
    let statement = only(&format!("INSERT INTO users VALUES ({a}, 'x'), ({b}, 'y')"));
    assert_eq!(statement.needs_columns(), Some((None, "users")));
    let columns = vec!["id".to_string(), "name".to_string()];
    let route = statement
        .route(&Params::NONE, Some(&columns), &schema())
        .unwrap();
    assert_eq!(route.split.len(), 2);
    for part in &route.split {
        parses(&part.sql);
    }
    let reversed = vec!["name".to_string(), "id".to_string()];
    let statement = only(&format!("INSERT INTO public.users VALUES ('x', {a})"));
    assert_eq!(statement.needs_columns(), Some((Some("public"), "users")));
    let route = statement
        .route(&Params::NONE, Some(&reversed), &schema())
        .unwrap();
    assert_eq!(route.shards, Shards::One(int(a)));
    // The key's place beyond the row: DEFAULT.
    let statement = only("INSERT INTO users VALUES ('x')");
    let error = statement
        .route(&Params::NONE, Some(&reversed), &schema())
        .unwrap_err();
    assert_eq!(error.code, "0A000");
    // Columns not given.
    assert!(statement.route(&Params::NONE, None, &schema()).is_err());
    // A table sharded by column name: sharded if it has the column.
    let statement = only(&format!("INSERT INTO events VALUES ({a}, 'x')"));
    assert_eq!(statement.needs_columns(), Some((None, "events")));
    let with = vec!["tenant_id".to_string(), "body".to_string()];
    let without = vec!["id".to_string(), "body".to_string()];
    assert_eq!(
        statement
            .route(&Params::NONE, Some(&with), &schema())
            .unwrap()
            .shards,
        Shards::One(int(a))
    );
    assert_eq!(
        statement
            .route(&Params::NONE, Some(&without), &schema())
            .unwrap()
            .shards,
        Shards::All
    );
}

#[test]
fn insert_errors() {
    unsupported("INSERT INTO users (name) VALUES ('x')", "sharding key");
    unsupported(
        "INSERT INTO users (id, name) VALUES (DEFAULT, 'x')",
        "sharding key",
    );
    unsupported("INSERT INTO users DEFAULT VALUES", "sharding key");
    unsupported(
        "INSERT INTO users (id) VALUES (1), (DEFAULT)",
        "sharding key",
    );
    unsupported(
        "INSERT INTO users (id) VALUES (nextval('s'))",
        "constant or a parameter",
    );
    unsupported(
        "INSERT INTO users (id) VALUES (1 + 1)",
        "constant or a parameter",
    );
    unsupported(
        "INSERT INTO users (id, name) SELECT id, name FROM old_users",
        "INSERT ... SELECT",
    );
    unsupported(
        "INSERT INTO users (id, name) SELECT * FROM old_users",
        "INSERT ... SELECT",
    );
    unsupported(
        "INSERT INTO users (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET id = 2",
        "sharding key",
    );
    let hint = err("INSERT INTO users (name) VALUES ('x')").hint.unwrap();
    assert!(hint.contains("\"id\""), "{hint}");

    let error = err("INSERT INTO regions (code) VALUES (5)");
    assert_eq!(error.code, "23514");
    let error = err("INSERT INTO users (id) VALUES ('abc')");
    assert_eq!(error.code, "22P02");
    let error = err("INSERT INTO users (id) VALUES (99999999999999999999)");
    assert_eq!(error.code, "22003");
    let values = [Some(&b"nope"[..])];
    let error = error_params("INSERT INTO users (id) VALUES ($1)", &text_params(&values));
    assert_eq!(error.code, "22P02");
    let error = err("INSERT INTO users (id) VALUES ($1)");
    assert_eq!(error.code, "08P01");
    let odd = [Some(&[1u8, 2, 3][..])];
    let params = Params {
        values: &odd,
        formats: &[1],
        types: &[],
    };
    assert_eq!(
        error_params("INSERT INTO users (id) VALUES ($1)", &params).code,
        "22P03"
    );
}

#[test]
fn insert_other_tables() {
    let (a, _, _) = keys();
    assert_eq!(
        shards(&format!(
            "INSERT INTO users (id, name) SELECT {a}, name FROM old_users"
        )),
        Shards::One(int(a))
    );
    let route = r("INSERT INTO settings (k, v) VALUES ('a', 'b')");
    assert_eq!(route.shards, Shards::All);
    assert!(route.omnisharded);
    let route = r("INSERT INTO unknown_table (k) VALUES (1), (2)");
    assert_eq!(route.shards, Shards::All);
    assert!(!route.omnisharded);
    assert_eq!(
        shards(&format!(
            "INSERT INTO events (tenant_id, body) VALUES ({a}, 'x')"
        )),
        Shards::One(int(a))
    );
    assert_eq!(
        shards("INSERT INTO events (id, body) VALUES (1, 'x')"),
        Shards::All
    );
    unsupported("INSERT INTO settings SELECT * FROM users", "omnisharded");
    unsupported(
        "WITH x AS (DELETE FROM users RETURNING *) INSERT INTO users (id) SELECT 1",
        "WITH",
    );
}

// ---------------------------------------------------------------- cross-shard SELECT

#[test]
fn order_by_resolution() {
    let route = r("SELECT id, name AS n, lower(email) FROM users ORDER BY 2, id DESC, lower(email) NULLS FIRST");
    assert_eq!(
        route.merge.order_by,
        vec![
            SortKey {
                column: 1,
                descending: false,
                nulls_first: false
            },
            SortKey {
                column: 0,
                descending: true,
                nulls_first: true
            },
            SortKey {
                column: 2,
                descending: false,
                nulls_first: true
            },
        ]
    );
    assert!(route.rewrite.is_none());
    assert_eq!(route.shards, Shards::All);
    let route = r("SELECT u.id AS n, name FROM users u ORDER BY n DESC NULLS LAST, u.name");
    assert_eq!(
        route.merge.order_by,
        vec![
            SortKey {
                column: 0,
                descending: true,
                nulls_first: false
            },
            SortKey {
                column: 1,
                descending: false,
                nulls_first: false
            },
        ]
    );
    let route = r("SELECT u.name, u.id FROM users u ORDER BY id");
    assert_eq!(route.merge.order_by[0].column, 1);
    let route = r("SELECT id, * FROM users ORDER BY id");
    assert_eq!(route.merge.order_by[0].column, 0);

    unsupported(
        "SELECT id FROM users ORDER BY name",
        "must appear in the select list",
    );
    // With *, a plain column is resolved by name when the rows arrive.
    let route = r("SELECT * FROM users ORDER BY name DESC");
    assert_eq!(route.merge.order_by_names, vec![(0, "name".to_string())]);
    assert!(route.merge.order_by[0].descending);
    let error = err("SELECT * FROM users ORDER BY length(name)");
    assert_eq!(error.hint.as_deref(), Some("list the columns instead of *"));
    unsupported("SELECT *, id FROM users ORDER BY 2", "after *");
    unsupported("SELECT id FROM users ORDER BY id USING <", "USING");
    assert_eq!(err("SELECT id FROM users ORDER BY 3").code, "42P10");
    // One shard: anything goes.
    assert!(r("SELECT id FROM users WHERE id = 1 ORDER BY name")
        .merge
        .is_concat());
}

#[test]
fn limit_and_offset() {
    let route = r("SELECT id FROM users ORDER BY id LIMIT 10");
    assert_eq!(route.merge.limit, Some(10));
    assert_eq!(route.merge.offset, 0);
    assert!(route.rewrite.is_none());

    let route = r("SELECT id FROM users ORDER BY id LIMIT 10 OFFSET 5");
    assert_eq!((route.merge.limit, route.merge.offset), (Some(10), 5));
    let rewrite = route.rewrite.unwrap();
    assert_eq!(rewrite, "SELECT id FROM users ORDER BY id LIMIT 15");
    parses(&rewrite);

    let route = r("SELECT id FROM users OFFSET 5");
    assert_eq!((route.merge.limit, route.merge.offset), (None, 5));
    assert_eq!(route.rewrite.as_deref(), Some("SELECT id FROM users"));

    let route = r("SELECT id FROM users FETCH FIRST 3 ROWS ONLY");
    assert_eq!(route.merge.limit, Some(3));
    let route = r("SELECT id FROM users LIMIT ALL");
    assert_eq!(route.merge.limit, None);

    let values = [Some(&b"10"[..]), Some(&b"5"[..])];
    let sql = "SELECT id FROM users ORDER BY id LIMIT $1 OFFSET $2";
    let route = route_params(sql, &text_params(&values));
    assert_eq!((route.merge.limit, route.merge.offset), (Some(10), 5));
    let rewrite = route.rewrite.unwrap();
    assert_eq!(
        rewrite,
        "SELECT id FROM users ORDER BY id LIMIT $1::bigint + $2::bigint"
    );
    parses(&rewrite);
    let limit = 7i64.to_be_bytes();
    let values = [Some(&limit[..]), None];
    let params = Params {
        values: &values,
        formats: &[1],
        types: &[20, 20],
    };
    let route = route_params(sql, &params);
    assert_eq!((route.merge.limit, route.merge.offset), (Some(7), 0));
    let route = route_params(
        "SELECT id FROM users LIMIT 10 OFFSET $1",
        &text_params(&[Some(&b"3"[..])]),
    );
    assert_eq!(
        route.rewrite.as_deref(),
        Some("SELECT id FROM users LIMIT 10 + $1::bigint")
    );

    let values = [Some(&b"-1"[..]), Some(&b"0"[..])];
    assert_eq!(error_params(sql, &text_params(&values)).code, "2201W");
    let values = [Some(&b"1"[..]), Some(&b"-1"[..])];
    assert_eq!(error_params(sql, &text_params(&values)).code, "2201X");
    unsupported("SELECT id FROM users LIMIT (SELECT 1)", "LIMIT");
    unsupported(
        "SELECT id FROM users ORDER BY id FETCH FIRST 3 ROWS WITH TIES",
        "WITH TIES",
    );
}

#[test]
fn aggregates_and_grouping() {
    let route = r(
        "SELECT count(*), count(x), sum(x), min(x), max(x), bool_and(b), bool_or(b), every(b) FROM users",
    );
    let functions: Vec<AggregateFunction> =
        route.merge.aggregates.iter().map(|a| a.function).collect();
    assert_eq!(
        functions,
        vec![
            AggregateFunction::Count,
            AggregateFunction::Count,
            AggregateFunction::Sum,
            AggregateFunction::Min,
            AggregateFunction::Max,
            AggregateFunction::BoolAnd,
            AggregateFunction::BoolOr,
            AggregateFunction::BoolAnd,
        ]
    );
    assert!(route.rewrite.is_none());
    assert!(route.read);

    let route = r(
        "SELECT country, avg(age) FILTER (WHERE age > 0), count(*) AS n FROM users GROUP BY country ORDER BY n DESC LIMIT 5 OFFSET 1",
    );
    assert_eq!(route.merge.group_by, vec![0]);
    assert_eq!(
        route.merge.aggregates,
        vec![
            Aggregate {
                column: 1,
                function: AggregateFunction::Avg { count_column: 3 }
            },
            Aggregate {
                column: 2,
                function: AggregateFunction::Count
            },
        ]
    );
    assert_eq!(route.merge.hidden_columns, 1);
    assert_eq!((route.merge.limit, route.merge.offset), (Some(5), 1));
    assert_eq!(route.merge.order_by[0].column, 2);
    let rewrite = route.rewrite.unwrap();
    assert_eq!(
        rewrite,
        "SELECT country, sum(age) FILTER (WHERE age > 0) AS avg, count(*) AS n, \
         count(age) FILTER (WHERE age > 0) FROM users GROUP BY country ORDER BY n DESC"
    );
    parses(&rewrite);

    let route = r("SELECT avg(x) AS mean FROM users");
    assert_eq!(
        route.rewrite.as_deref(),
        Some("SELECT sum(x) AS mean, count(x) FROM users")
    );
    let route = r("SELECT lower(name), count(*) FROM users GROUP BY lower(name)");
    assert_eq!(route.merge.group_by, vec![0]);
    let route = r("SELECT name, count(*) FROM users GROUP BY 1");
    assert_eq!(route.merge.group_by, vec![0]);
    let route = r("SELECT u.name AS n, max(id) FROM users u GROUP BY u.name");
    assert_eq!(route.merge.group_by, vec![0]);
    let route = r("SELECT name FROM users GROUP BY name");
    assert_eq!(route.merge.group_by, vec![0]);
    assert!(route.merge.aggregates.is_empty());
    let route = r("SELECT min(DISTINCT x) FROM users");
    assert_eq!(route.merge.aggregates[0].function, AggregateFunction::Min);

    unsupported(
        "SELECT count(*) FROM users GROUP BY name",
        "GROUP BY name must appear",
    );
    unsupported(
        "SELECT name, count(*) FROM users GROUP BY name HAVING count(*) > 1",
        "HAVING",
    );
    unsupported("SELECT count(DISTINCT name) FROM users", "DISTINCT");
    unsupported("SELECT array_agg(name) FROM users", "array_agg");
    unsupported("SELECT string_agg(name, ',') FROM users", "string_agg");
    unsupported(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) FROM users",
        "WITHIN GROUP",
    );
    unsupported("SELECT sum(x) + 1 FROM users", "inside an expression");
    unsupported(
        "SELECT coalesce(max(x), 0) FROM users",
        "inside an expression",
    );
    unsupported("SELECT count(*)::int FROM users", "inside an expression");
    unsupported("SELECT row_number() OVER () FROM users", "window");
    unsupported("SELECT sum(x) OVER (PARTITION BY y) FROM users", "window");
    unsupported(
        "SELECT name, count(*) FROM users GROUP BY ROLLUP (name)",
        "ROLLUP",
    );
    unsupported("SELECT *, avg(x) FROM users GROUP BY id", "after *");
    // On one shard all of it is fine.
    let one = r("SELECT array_agg(name), sum(x) + 1 FROM users WHERE id = 1 HAVING count(*) > 0");
    assert!(one.merge.is_concat() && one.rewrite.is_none());
}

#[test]
fn distinct_and_set_operations() {
    assert!(r("SELECT DISTINCT name FROM users").merge.distinct);
    unsupported(
        "SELECT DISTINCT ON (name) name, id FROM users",
        "DISTINCT ON",
    );
    let route = r("SELECT id FROM users UNION ALL SELECT user_id FROM orders");
    assert!(route.merge.is_concat());
    assert_eq!(route.shards, Shards::All);
    assert!(
        r("SELECT id FROM users UNION SELECT user_id FROM orders")
            .merge
            .distinct
    );
    assert!(
        r("SELECT id FROM users UNION ALL SELECT user_id FROM orders UNION SELECT 1")
            .merge
            .distinct
    );
    unsupported(
        "SELECT id FROM users INTERSECT SELECT user_id FROM orders",
        "INTERSECT",
    );
    unsupported("SELECT id FROM users EXCEPT SELECT 1", "EXCEPT");
    unsupported("SELECT id FROM users UNION ALL SELECT 1", "repeat");
    unsupported(
        "SELECT id FROM users UNION ALL SELECT id FROM settings",
        "repeat",
    );
    unsupported("SELECT id FROM users UNION SELECT 1 ORDER BY 1", "ORDER BY");
    unsupported(
        "SELECT id FROM users UNION SELECT user_id FROM orders UNION ALL SELECT 1",
        "UNION",
    );
    unsupported(
        "SELECT count(*) FROM users UNION ALL SELECT count(*) FROM orders",
        "aggregate",
    );
    unsupported(
        "SELECT id FROM users UNION ALL (SELECT user_id FROM orders UNION SELECT 1)",
        "UNION",
    );
    let (a, b, c) = keys();
    assert_eq!(
        shards(&format!(
            "SELECT * FROM users WHERE id = {a} UNION SELECT * FROM users WHERE id = {c}"
        )),
        Shards::One(int(a))
    );
    unsupported(
        &format!("SELECT * FROM users WHERE id = {a} INTERSECT SELECT * FROM users WHERE id = {b}"),
        "INTERSECT",
    );
}

#[test]
fn subqueries_and_ctes() {
    // Plain subqueries over co-located shards are fine.
    for sql in [
        "SELECT * FROM users WHERE id IN (SELECT user_id FROM orders)",
        "SELECT s.id FROM (SELECT * FROM users WHERE name = 'x') s ORDER BY 1",
        "WITH u AS (SELECT * FROM users) SELECT count(*) FROM u",
        "SELECT *, (SELECT max(rate) FROM currencies) FROM users",
        "SELECT * FROM users WHERE EXISTS (SELECT 1 FROM settings LIMIT 1)",
    ] {
        r(sql);
    }
    unsupported("SELECT * FROM (SELECT * FROM users LIMIT 10) s", "LIMIT");
    unsupported(
        "SELECT * FROM users WHERE x > (SELECT avg(x) FROM users)",
        "aggregate",
    );
    unsupported(
        "WITH c AS (SELECT count(*) FROM users) SELECT * FROM c",
        "aggregate",
    );
    unsupported(
        "WITH c AS (SELECT count(*) AS n FROM users) SELECT * FROM settings, c",
        "aggregate",
    );
    unsupported(
        "SELECT * FROM (SELECT DISTINCT name FROM users) s",
        "DISTINCT",
    );
    unsupported(
        "SELECT * FROM (SELECT name, count(*) FROM users GROUP BY name) s",
        "GROUP BY",
    );
    unsupported(
        "SELECT * FROM (SELECT rank() OVER (ORDER BY id) FROM users) s",
        "window",
    );
    unsupported(
        "SELECT * FROM settings WHERE id IN (SELECT id FROM users)",
        "only in subqueries",
    );
    unsupported(
        "SELECT (SELECT name FROM users WHERE id = 1)",
        "only in subqueries",
    );
    unsupported(
        "WITH x AS (INSERT INTO users (id) VALUES (1) RETURNING *) SELECT * FROM x",
        "WITH",
    );
    unsupported("SELECT JSON_ARRAYAGG(name) FROM users", "cannot route");
    // Subqueries over omnisharded tables may aggregate.
    r("SELECT * FROM users WHERE x > (SELECT avg(rate) FROM currencies)");
    // Keyed to one shard, everything runs there.
    r("SELECT * FROM (SELECT * FROM users WHERE id = 1 LIMIT 10) s WHERE s.id = 1");
}

#[test]
fn rewrites_are_valid_sql() {
    for sql in [
        "SELECT avg(x), avg(y) FROM users",
        "SELECT name, avg(x) FROM users GROUP BY name LIMIT 3",
        "SELECT id FROM users ORDER BY id LIMIT $1 OFFSET 2",
        "SELECT id FROM users OFFSET $1",
        "SELECT DISTINCT name FROM users LIMIT 2 OFFSET 1",
        "WITH u AS (SELECT * FROM users) SELECT avg(x) FROM u",
    ] {
        let route = route_params(sql, &text_params(&[Some(&b"1"[..]), Some(&b"1"[..])]));
        let rewrite = route.rewrite.unwrap_or_else(|| panic!("no rewrite: {sql}"));
        parses(&rewrite);
    }
}

// ---------------------------------------------------------------- UPDATE / DELETE

#[test]
fn updates_and_deletes() {
    let (a, b, c) = keys();
    assert_eq!(
        shards(&format!("UPDATE users SET name = 'x' WHERE id = {a}")),
        Shards::One(int(a))
    );
    assert_eq!(shards("UPDATE users SET name = 'x'"), Shards::All);
    assert_eq!(
        shards(&format!("DELETE FROM users WHERE id = {a} RETURNING *")),
        Shards::One(int(a))
    );
    assert_eq!(
        shards(&format!(
            "DELETE FROM orders o USING users u WHERE u.id = o.user_id AND u.id = {a}"
        )),
        Shards::One(int(a))
    );
    assert_eq!(
        shards(&format!(
            "UPDATE orders o SET x = 1 FROM users u WHERE o.user_id = {a}"
        )),
        Shards::One(int(a))
    );
    assert_eq!(
        shards(&format!(
            "UPDATE users SET name = 'x' WHERE id IN ({a}, {b})"
        )),
        Shards::from_list(vec![int(a), int(b)], SHARDS)
    );
    let route = r("UPDATE settings SET v = 1");
    assert_eq!(route.shards, Shards::All);
    assert!(route.omnisharded);
    let route = r("DELETE FROM settings WHERE k = 'a'");
    assert!(route.omnisharded && !route.read);
    unsupported(
        "UPDATE settings SET v = (SELECT max(x) FROM users)",
        "omnisharded",
    );
    unsupported(
        "UPDATE users SET x = (SELECT max(x) FROM users)",
        "aggregate",
    );
    // On one shard the subquery is fine.
    r(&format!(
        "UPDATE users SET x = (SELECT max(x) FROM users) WHERE id = {a}"
    ));
    // The key set to a value of the same shard: a plain route.
    let route = r(&format!("UPDATE users SET id = {c} WHERE id = {a}"));
    assert_eq!(route.shards, Shards::One(int(a)));
    assert!(route.key_update.is_none());
    let route = r(&format!(
        "UPDATE users SET id = {a} WHERE id = {a} AND id = {b}"
    ));
    assert!(route.key_update.is_none());
}

#[test]
fn updates_that_move_rows() {
    let (a, b, _) = keys();
    let route = r(&format!(
        "UPDATE users SET id = {b}, name = 'x' WHERE id = {a}"
    ));
    assert_eq!(route.shards, Shards::One(int(a)));
    let update = route.key_update.unwrap();
    assert_eq!(update.table, "\"users\"");
    assert_eq!(update.column, "id");
    assert_eq!(update.new_shard, Some(int(b)));
    assert_eq!(update.old_shards, Shards::One(int(a)));
    assert_eq!(
        update
            .shards_of_text(Some(&b.to_string()), &schema())
            .unwrap(),
        Shards::One(int(b))
    );

    let (sa, sb) = (a.to_string(), b.to_string());
    let values = [Some(sb.as_bytes()), Some(sa.as_bytes())];
    let route = route_params(
        "UPDATE public.users SET (name, id) = ('x', $1) WHERE id = $2",
        &text_params(&values),
    );
    let update = route.key_update.unwrap();
    assert_eq!(update.table, "\"public\".\"users\"");
    assert_eq!(update.new_shard, Some(int(b)));

    let route = r("UPDATE users SET id = id + 1");
    let update = route.key_update.unwrap();
    assert_eq!(update.new_shard, None);
    assert_eq!(update.old_shards, Shards::All);

    let route = r(&format!(
        "UPDATE events SET tenant_id = {b} WHERE tenant_id = {a}"
    ));
    assert_eq!(route.key_update.unwrap().column, "tenant_id");

    unsupported(
        &format!("UPDATE users SET id = {b} WHERE id = {a} RETURNING *"),
        "RETURNING",
    );
    unsupported(
        &format!("UPDATE users u SET id = {b} FROM orders o WHERE u.id = {a}"),
        "FROM",
    );
    assert_eq!(
        err("UPDATE regions SET code = 5 WHERE code = 1").code,
        "23514"
    );
    // The same shard with RETURNING is fine.
    r(&format!(
        "UPDATE users SET id = {a} WHERE id = {a} RETURNING *"
    ));
}

// ---------------------------------------------------------------- commands

#[test]
fn transaction_commands() {
    for (sql, command) in [
        ("BEGIN", Command::Begin),
        ("BEGIN ISOLATION LEVEL SERIALIZABLE", Command::Begin),
        ("START TRANSACTION READ ONLY", Command::Begin),
        ("COMMIT", Command::Commit),
        ("END", Command::Commit),
        ("COMMIT AND CHAIN", Command::Commit),
        ("ROLLBACK", Command::Rollback),
        ("ABORT", Command::Rollback),
        ("SAVEPOINT a", Command::Savepoint),
        ("RELEASE SAVEPOINT a", Command::Savepoint),
        ("ROLLBACK TO SAVEPOINT a", Command::Savepoint),
        ("PREPARE TRANSACTION 'x'", Command::TwoPhase),
        ("COMMIT PREPARED 'x'", Command::TwoPhase),
        ("ROLLBACK PREPARED 'x'", Command::TwoPhase),
        ("SET search_path TO a, b", Command::Session),
        ("SET LOCAL statement_timeout = 5", Command::Session),
        (
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            Command::Session,
        ),
        ("RESET ALL", Command::Session),
        ("DISCARD ALL", Command::Session),
        ("DEALLOCATE ALL", Command::Session),
    ] {
        assert_eq!(only(sql).command(), &command, "{sql}");
    }
}

#[test]
fn pgdog_settings() {
    for (sql, command) in [
        (
            "SET pgdog.shard = 1",
            Command::SetShard {
                shard: Some(1),
                local: false,
            },
        ),
        (
            "SET pgdog.shard TO '2'",
            Command::SetShard {
                shard: Some(2),
                local: false,
            },
        ),
        (
            "SET LOCAL pgdog.shard = 3",
            Command::SetShard {
                shard: Some(3),
                local: true,
            },
        ),
        (
            "RESET pgdog.shard",
            Command::SetShard {
                shard: None,
                local: false,
            },
        ),
        (
            "SET pgdog.shard TO DEFAULT",
            Command::SetShard {
                shard: None,
                local: false,
            },
        ),
        (
            "SET pgdog.sharding_key = 'abc'",
            Command::SetShardingKey {
                value: Some("abc".into()),
                local: false,
            },
        ),
        (
            "SET LOCAL pgdog.sharding_key TO 42",
            Command::SetShardingKey {
                value: Some("42".into()),
                local: true,
            },
        ),
        (
            "RESET pgdog.sharding_key",
            Command::SetShardingKey {
                value: None,
                local: false,
            },
        ),
    ] {
        assert_eq!(only(sql).command(), &command, "{sql}");
    }
    for sql in [
        "SET pgdog.shard = 4",
        "SET pgdog.shard = 'x'",
        "SET pgdog.shard = -1",
        "SET pgdog.shard = 1, 2",
        "SET pgdog.sharding_key = 1, 2",
    ] {
        assert_eq!(only(sql).command(), &Command::Query, "{sql}");
        assert_eq!(err(sql).code, "22023", "{sql}");
    }
}

#[test]
fn sharding_key_text() {
    let schema = schema();
    assert_eq!(
        schema.shards_for_text("1234").unwrap(),
        Shards::One(int(1234))
    );
    assert_eq!(schema.shards_for_text("x").unwrap_err().code, "22P02");
    let config = pgdog_config::Config::from_str(
        "[[databases]]\nname = \"db\"\n[[databases]]\nname = \"db\"\nshard = 1\n",
        "pgdog.toml",
    )
    .unwrap();
    let bare = ShardingSchema::new(&config, "db");
    assert_eq!(bare.shards(), 2);
    assert_eq!(bare.shards_for_text("1").unwrap_err().code, "42704");
    assert!(!bare.has_sharded_tables());
    assert_eq!(ShardingSchema::new(&config, "nope").shards(), 1);
}

#[test]
fn table_rules() {
    let schema = schema();
    let users = schema.table_rule(None, "users", &[]).unwrap();
    assert_eq!((users.column(), users.any_table()), ("id", false));
    assert_eq!(users.shards_of_text("7").unwrap(), Shards::One(int(7)));
    assert_eq!(
        users.decode_binary(&7i32.to_be_bytes()).unwrap(),
        KeyValue::Int(7)
    );
    assert_eq!(users.decode_binary(&[1, 2, 3]).unwrap_err().code, "22P03");
    let events = schema
        .table_rule(Some("public"), "events", &["x", "tenant_id"])
        .unwrap();
    assert!(events.any_table());
    assert!(schema.table_rule(None, "events", &["x"]).is_none());
    assert!(schema
        .table_rule(None, "settings", &["tenant_id"])
        .is_none());
    let regions = schema.table_rule(None, "regions", &[]).unwrap();
    assert_eq!(regions.read_shards(&KeyValue::Int(5)), Shards::All);
    assert_eq!(regions.read_shards(&KeyValue::Int(3)), Shards::One(1));
    assert_eq!(regions.shards_of(None).unwrap_err().code, "23514");
}

#[test]
fn copy_statements() {
    let statement =
        only("COPY users (id, name) FROM STDIN WITH (FORMAT csv, HEADER, DELIMITER ';')");
    let Command::Copy(copy) = statement.command() else {
        panic!("{:?}", statement.command())
    };
    assert_eq!(copy.table, "users");
    assert_eq!(copy.columns, vec!["id".to_string(), "name".to_string()]);
    assert!(copy.from_stdin);
    assert_eq!(copy.options.format, CopyFormat::Csv);
    assert_eq!(copy.options.delimiter, b';');
    assert!(copy.options.header);
    assert_eq!(copy.options.quote, b'"');
    assert_eq!(copy.options.null, "");
    let CopyPlacement::Sharded {
        column, data_type, ..
    } = &copy.placement
    else {
        panic!("{:?}", copy.placement)
    };
    assert_eq!((column.as_str(), *data_type), ("id", DataType::Bigint));
    assert_eq!(
        copy.placement.shards_of(Some(&KeyValue::Int(5))).unwrap(),
        Shards::One(int(5))
    );
    assert_eq!(statement.needs_columns(), None);
    assert_eq!(copy.placement_for(None).unwrap().1, Some(0));
    assert_eq!(
        statement
            .route(&Params::NONE, None, &schema())
            .unwrap()
            .shards,
        Shards::All
    );

    let statement = only("COPY public.users FROM STDIN");
    assert_eq!(statement.needs_columns(), Some((Some("public"), "users")));
    let Command::Copy(copy) = statement.command() else {
        panic!()
    };
    assert_eq!(copy.options, CopyOptions::defaults(CopyFormat::Text));
    let columns = vec!["name".to_string(), "id".to_string()];
    assert_eq!(copy.placement_for(Some(&columns)).unwrap().1, Some(1));
    assert!(copy.placement_for(Some(&columns[..1])).is_err());

    let statement =
        only("COPY users (name) TO STDOUT WITH CSV HEADER NULL 'x' QUOTE '''' ESCAPE '\\'");
    let Command::Copy(copy) = statement.command() else {
        panic!()
    };
    assert!(!copy.from_stdin);
    assert_eq!(copy.options.null, "x");
    assert_eq!((copy.options.quote, copy.options.escape), (b'\'', b'\\'));
    assert_eq!(
        copy.placement_for(None).unwrap(),
        (CopyPlacement::Unsharded, None)
    );

    let statement = only("COPY settings FROM STDIN (FORMAT binary)");
    let Command::Copy(copy) = statement.command() else {
        panic!()
    };
    assert_eq!(copy.placement, CopyPlacement::Omnisharded);
    assert_eq!(copy.options.format, CopyFormat::Binary);
    assert_eq!(statement.needs_columns(), None);
    assert_eq!(
        only("COPY settings TO STDOUT")
            .route(&Params::NONE, None, &schema())
            .unwrap()
            .shards,
        Shards::Any
    );

    // Tables sharded by column name.
    let statement = only("COPY events FROM STDIN");
    assert_eq!(statement.needs_columns(), Some((None, "events")));
    let Command::Copy(copy) = statement.command() else {
        panic!()
    };
    let without = vec!["id".to_string()];
    assert_eq!(
        copy.placement_for(Some(&without)).unwrap().0,
        CopyPlacement::Unsharded
    );
    let with = vec!["id".to_string(), "tenant_id".to_string()];
    assert_eq!(copy.placement_for(Some(&with)).unwrap().1, Some(1));
    let Command::Copy(copy) = only("COPY logs (a) FROM STDIN").command().clone() else {
        panic!()
    };
    assert_eq!(copy.placement, CopyPlacement::Unsharded);

    // COPY of a query: like the query.
    let statement = only("COPY (SELECT * FROM users WHERE id = 5) TO STDOUT");
    assert_eq!(statement.command(), &Command::Query);
    assert_eq!(
        statement
            .route(&Params::NONE, None, &schema())
            .unwrap()
            .shards,
        Shards::One(int(5))
    );
    assert_eq!(shards("COPY (SELECT * FROM users) TO STDOUT"), Shards::All);
    unsupported(
        "COPY (SELECT * FROM users ORDER BY id) TO STDOUT",
        "COPY (query)",
    );
    unsupported("COPY users FROM '/tmp/x'", "file or program");
    unsupported("COPY users TO PROGRAM 'cat'", "file or program");
}

#[test]
fn utility_statements() {
    let (a, _, _) = keys();
    for sql in [
        "CREATE TABLE t (id bigint)",
        "ALTER TABLE users ADD COLUMN x int",
        "DROP TABLE users",
        "CREATE INDEX ON users (name)",
        "TRUNCATE users",
        "GRANT SELECT ON users TO bob",
        "VACUUM users",
        "ANALYZE users",
        "CALL p()",
        "DO $$ BEGIN END $$",
        "CREATE TABLE x AS SELECT * FROM users",
        "SELECT * INTO x FROM users",
        "LOCK TABLE users",
        "MERGE INTO settings s USING (VALUES (1)) v(x) ON true WHEN MATCHED THEN DELETE",
    ] {
        assert_eq!(shards(sql), Shards::All, "{sql}");
    }
    for sql in ["LISTEN chan", "NOTIFY chan, 'x'", "UNLISTEN *"] {
        assert_eq!(shards(sql), Shards::One(0), "{sql}");
    }
    assert_eq!(
        shards(&format!("EXPLAIN SELECT * FROM users WHERE id = {a}")),
        Shards::One(int(a))
    );
    assert_eq!(
        shards("EXPLAIN SELECT array_agg(x) FROM users"),
        Shards::All
    );
    let explain = r("EXPLAIN SELECT avg(x) FROM users ORDER BY 1 LIMIT 1 OFFSET 1");
    assert!(explain.merge.is_concat() && explain.rewrite.is_none() && explain.read);
    assert!(!r("EXPLAIN ANALYZE DELETE FROM users").read);
    unsupported(
        "EXPLAIN INSERT INTO users (id) VALUES (1), (2), (3), (4), (5), (6)",
        "EXPLAIN",
    );
    unsupported("PREPARE p AS SELECT 1", "PREPARE");
    unsupported("EXECUTE p", "PREPARE");
    unsupported("FETCH 10 FROM c", "cursors");
    unsupported("CLOSE c", "cursors");
    unsupported("DECLARE c CURSOR FOR SELECT * FROM users", "cursor");
    assert_eq!(
        shards(&format!(
            "DECLARE c CURSOR FOR SELECT * FROM users WHERE id = {a}"
        )),
        Shards::One(int(a))
    );
    unsupported(
        "MERGE INTO users u USING orders o ON u.id = o.user_id WHEN MATCHED THEN DELETE",
        "MERGE",
    );
}

#[test]
fn unparseable_empty_and_multiple_statements() {
    let schema = schema();
    let statement = only("SELEC 1");
    assert_eq!(
        statement
            .route(&Params::NONE, None, &schema)
            .unwrap()
            .shards,
        Shards::Any
    );
    assert!(!statement.read());
    assert_eq!(statement.sql(), "SELEC 1");
    for empty in ["", "  ", ";", "-- nothing\n", "/* x */"] {
        assert!(
            Analysis::analyze(empty, &schema).statements().is_empty(),
            "{empty:?}"
        );
    }
    let analysis = Analysis::analyze(
        "SELECT 1; /* c */ INSERT INTO users (id) VALUES (5);  UPDATE users SET x = 1 ; ",
        &schema,
    );
    let texts: Vec<&str> = analysis.statements().iter().map(Statement::sql).collect();
    assert_eq!(
        texts,
        [
            "SELECT 1",
            "INSERT INTO users (id) VALUES (5)",
            "UPDATE users SET x = 1"
        ]
    );
    let reads: Vec<bool> = analysis.statements().iter().map(Statement::read).collect();
    assert_eq!(reads, [true, false, false]);
    let routes: Vec<Shards> = analysis
        .statements()
        .iter()
        .map(|s| s.route(&Params::NONE, None, &schema).unwrap().shards)
        .collect();
    assert_eq!(routes, [Shards::Any, Shards::One(int(5)), Shards::All]);
    assert_eq!(only("SELECT 1;").sql(), "SELECT 1");
}

#[test]
fn routing_comments_override() {
    let schema = schema();
    assert_eq!(
        shards("/* pgdog_shard: 2 */ SELECT * FROM users"),
        Shards::One(2)
    );
    assert_eq!(
        shards("SELECT array_agg(x) FROM users -- pgdog_shard: 3"),
        Shards::One(3)
    );
    assert_eq!(
        shards("/* pgdog_shard: 1 */ INSERT INTO users (name) VALUES ('x')"),
        Shards::One(1)
    );
    assert_eq!(
        shards("/* pgdog_sharding_key: 1234 */ SELECT * FROM orders"),
        Shards::One(int(1234))
    );
    assert_eq!(err("/* pgdog_shard: 4 */ SELECT 1").code, "22023");
    assert_eq!(err("/* pgdog_shard: one */ SELECT 1").code, "22023");
    assert_eq!(err("/* pgdog_sharding_key: abc */ SELECT 1").code, "22P02");
    assert_eq!(
        only("/* pgdog_shard: 1 */ INSERT INTO users VALUES (1)").needs_columns(),
        None
    );
    assert_eq!(
        only("SELECT '/* pgdog_shard: 1 */' FROM users").manual(),
        None
    );

    let analysis = Analysis::analyze(
        "SELECT * FROM users; /* pgdog_shard: 1 */ SELECT * FROM users; SELECT 2 /* pgdog_shard: 2 */; -- pgdog_shard: 3",
        &schema,
    );
    let manual: Vec<Option<&Manual>> = analysis
        .statements()
        .iter()
        .map(Statement::manual)
        .collect();
    assert_eq!(
        manual,
        [None, Some(&Manual::Shard(1)), Some(&Manual::Shard(2))]
    );
}

#[test]
fn one_shard_needs_no_routing() {
    let schema = schema_with(1);
    for sql in [
        "SELECT array_agg(x) FROM users ORDER BY 1",
        "INSERT INTO users (name) VALUES ('x')",
        "INSERT INTO users VALUES (1)",
        "PREPARE p AS SELECT 1",
        "UPDATE users SET id = 5 RETURNING *",
    ] {
        let analysis = Analysis::analyze(sql, &schema);
        let statement = &analysis.statements()[0];
        assert_eq!(statement.needs_columns(), None, "{sql}");
        let route = statement.route(&Params::NONE, None, &schema).unwrap();
        assert_eq!(route, Route::to(Shards::One(0), statement.read()), "{sql}");
    }
    let analysis = Analysis::analyze("COPY users FROM STDIN", &schema);
    assert_eq!(analysis.statements()[0].needs_columns(), None);
    assert_eq!(
        Analysis::analyze("BEGIN", &schema).statements()[0].command(),
        &Command::Begin
    );
}

#[test]
fn never_panics_on_odd_input() {
    let schema = schema();
    for sql in [
        "SELECT * FROM users WHERE id = $0",
        "SELECT * FROM users WHERE id = $99999999999",
        "SELECT * FROM users WHERE (id, name) = (1, 'x')",
        "SELECT * FROM users WHERE id = ANY(NULL)",
        "SELECT * FROM users WHERE id = ANY(ARRAY[1, x])",
        "SELECT * FROM users ORDER BY 0",
        "SELECT * FROM users GROUP BY 99999999999",
        "INSERT INTO users (id) VALUES ($0)",
        "INSERT INTO users (id) SELECT 1 UNION SELECT 2",
        "UPDATE users SET (id, name) = (SELECT 1, 'x')",
        "SELECT 1\0",
        "WITH RECURSIVE r AS (SELECT 1 UNION ALL SELECT * FROM r, users) SELECT * FROM r",
        "SELECT * FROM ROWS FROM (generate_series(1, 2)) g, users",
        "SELECT XMLELEMENT(name x, id) FROM users ORDER BY 1",
        "SELECT id FROM users ORDER BY id COLLATE \"C\"",
    ] {
        let analysis = Analysis::analyze(sql, &schema);
        for statement in analysis.statements() {
            let _ = statement.route(&Params::NONE, Some(&["id".to_string()]), &schema);
        }
    }
}

#[test]
fn keys_of_subqueries_in_from() {
    let (a, _, _) = keys();
    assert_eq!(
        shards(&format!(
            "SELECT * FROM (SELECT * FROM users WHERE id = {a}) s"
        )),
        Shards::One(int(a))
    );
    assert_eq!(
        shards(&format!(
            "SELECT * FROM orders o JOIN (SELECT * FROM users WHERE id = {a}) u ON u.id = o.user_id"
        )),
        Shards::One(int(a))
    );
    // Under an outer join the subquery's rows may be missing: no restriction, and the join
    // is not on the sharding keys, so it cannot run across shards.
    unsupported(
        &format!("SELECT * FROM orders o LEFT JOIN (SELECT * FROM users WHERE id = {a}) u ON true"),
        "join",
    );
}
