//! The edge-value corpus of docs/TYPES.md: every built-in type at its
//! limits, NULLs, and the values that have no DynamoDB form. The type
//! tests copy it; the archive tests archive and restore it.

use anyhow::Result;

use crate::TestStack;

/// A table named `corpus` in the stack's schema with the corpus's rows.
pub const CORPUS_COLUMNS: &str = "id int PRIMARY KEY, i2 smallint, i4 integer, i8 bigint, n numeric, n38 numeric(38,0), \
    r real, d double precision, t text, vc varchar(20), ch char(5), b bool, by bytea, u uuid, \
    dt date, tm time, tz timetz, ts timestamp, tstz timestamptz, iv interval, j json, jb jsonb, \
    ai int[], at text[], a2 int[][], e {schema}.mood, ip inet, cidr_ cidr, mac macaddr, m money, pt point";

pub const CORPUS_ROWS: &str = r#"
(1, -32768, -2147483648, -9223372036854775808, '-1e-130', '-99999999999999999999999999999999999999',
 '-0', '-1.7976931348623157e308', '', 'ü', 'a', false, '\x', '00000000-0000-0000-0000-000000000000',
 '0001-01-01', '00:00', '00:00+14', '1970-01-01 00:00:00', '1970-01-01 00:00:00+00', '-1 day',
 '{"a":[1,2.50,{"b":null}]}', '{"z":1,"a":"x"}', '{1,NULL,3}', '{"a b",NULL,""}', '{{1,2},{3,4}}',
 'sad', '::1', '10.0.0.0/8', '08:00:2b:01:02:03', '-1234.56', '(1,2)'),
(2, 32767, 2147483647, 9223372036854775807, '9.9999999999999999999999999999999999999e125',
 '99999999999999999999999999999999999999', 'Infinity', 'NaN', E'😀 日本 \t\n "quotes" \\', 'x', 'abcde', true,
 '\xdeadbeef', 'ffffffff-ffff-ffff-ffff-ffffffffffff', 'infinity', '23:59:59.999999', '23:59:59.999999-12',
 '294276-12-31 23:59:59.999999', '2024-02-29 23:59:59.999999-08', '178000000 years', '[]',
 '{"big": 12345678901234567890123456789.123456789, "nested": {"deep": [true, false]}}', '{}', '{}',
 '{{NULL,NULL}}', 'happy', '192.168.0.1/24', '::/0', 'ff:ff:ff:ff:ff:ff', '92233720368547758.07', '(-1.5,1e10)'),
(3, 0, 0, 0, '1234567890123456789012345678901234567890', NULL, '-Infinity', '5e-324', 'é', NULL, NULL, NULL,
 NULL, NULL, '2000-02-29', NULL, NULL, NULL, NULL, NULL, '{"x": 1e400}', '{"x": 1e-400}', NULL, NULL, NULL,
 NULL, NULL, NULL, NULL, NULL, NULL),
(4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)
"#;

pub async fn corpus(stack: &TestStack) -> Result<String> {
    let src = stack.source("corpus");
    let schema = &stack.schema;
    stack
        .sql(&format!(
            "CREATE TYPE {schema}.mood AS ENUM ('sad', 'ok', 'happy'); CREATE TABLE {src} ({}); INSERT INTO {src} VALUES {CORPUS_ROWS};",
            CORPUS_COLUMNS.replace("{schema}", schema)
        ))
        .await?;
    Ok(src)
}
