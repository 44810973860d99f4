//! Item sizes against the DynamoDB emulator's own accounting, and items over
//! 400 KB offloaded to the S3 emulator and read back through their pointer.
//!
//! dynalite reproduces the service's size arithmetic (consumed capacity and
//! the 400 KB check use the same function), so agreement with it is the
//! closest a local test gets to agreement with DynamoDB. It differs from
//! DynamoDB's documentation in two places, both checked below so that a
//! change on either side shows: it counts numbers by their base-100 encoding
//! (up to 2 bytes more than the documented rule) and strings in UTF-16 code
//! units (fewer than the UTF-8 bytes DynamoDB documents, for non-ASCII text).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ReturnConsumedCapacity, ScalarAttributeType, TableStatus,
};
use backfill_item::size::{item_size, item_size_upper_bound, write_capacity_units, MAX_ITEM_BYTES};
use backfill_item::Item;
use backfill_offload::{canonical_json, OffloadError, S3Offloader, POINTER_ATTRIBUTE};
use backfill_testkit::{unique, TestEnv};

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}
fn n(v: &str) -> AttributeValue {
    AttributeValue::N(v.to_string())
}
fn item(pairs: Vec<(&str, AttributeValue)>) -> Item {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// `base` with an ASCII attribute `pad` added so that `item_size` is exactly `size`.
fn padded(mut base: Item, size: usize) -> Item {
    let without = item_size(&base) + "pad".len();
    assert!(
        size >= without,
        "{size} is smaller than the item without padding ({without})"
    );
    base.insert("pad".into(), s(&"p".repeat(size - without)));
    assert_eq!(item_size(&base), size);
    base
}

/// An on-demand table keyed by `id` (N), created directly so the test does
/// not depend on the sink, and waited for until it is ACTIVE.
async fn create_table(ddb: &aws_sdk_dynamodb::Client) -> Result<String> {
    let name = unique("size");
    ddb.create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::N)
                .build()?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()?,
        )
        .send()
        .await
        .context("creating a table in the DynamoDB emulator (run scripts/stack-up.sh)")?;
    for _ in 0..100 {
        let d = ddb.describe_table().table_name(&name).send().await?;
        if d.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return Ok(name);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("table {name} did not become ACTIVE")
}

/// The write capacity dynalite reports for putting `item` on its own.
async fn consumed(ddb: &aws_sdk_dynamodb::Client, table: &str, item: &Item) -> Result<f64> {
    let out = ddb
        .put_item()
        .table_name(table)
        .set_item(Some(item.clone()))
        .return_consumed_capacity(ReturnConsumedCapacity::Total)
        .send()
        .await
        .with_context(|| format!("putting an item of {} bytes", item_size(item)))?;
    out.consumed_capacity()
        .and_then(|c| c.capacity_units())
        .context("no ConsumedCapacity in the PutItem response")
}

#[tokio::test]
async fn write_units_from_item_size_match_consumed_capacity() -> Result<()> {
    let aws = TestEnv::from_env().aws().await;
    let table = create_table(&aws.dynamodb).await?;

    let nested = AttributeValue::M(HashMap::from([
        (
            "tags".to_string(),
            AttributeValue::L((0..200).map(|i| s(&format!("tag-{i}"))).collect()),
        ),
        (
            "meta".to_string(),
            AttributeValue::M(HashMap::from([
                ("ok".to_string(), AttributeValue::Bool(true)),
                ("none".to_string(), AttributeValue::Null(true)),
                ("count".to_string(), n("123456")),
                (
                    "inner".to_string(),
                    AttributeValue::L(vec![n("7"), s("x"), AttributeValue::M(HashMap::new())]),
                ),
            ])),
        ),
    ]));
    let shapes: Vec<(&str, Item)> = vec![
        ("tiny", item(vec![("id", n("1")), ("name", s("hello"))])),
        (
            "3 KB string",
            item(vec![("id", n("2")), ("body", s(&"x".repeat(3000)))]),
        ),
        (
            "nested map and list",
            item(vec![("id", n("3")), ("doc", nested)]),
        ),
        (
            "binary",
            item(vec![
                ("id", n("4")),
                ("bin", AttributeValue::B(Blob::new(vec![0xAB; 5000]))),
            ]),
        ),
        (
            "sets",
            item(vec![
                ("id", n("5")),
                (
                    "ss",
                    AttributeValue::Ss((0..300).map(|i| format!("member-{i}")).collect()),
                ),
                (
                    "ns",
                    AttributeValue::Ns((1..300).map(|i| (i * 1000).to_string()).collect()),
                ),
                (
                    "bs",
                    AttributeValue::Bs((0..50).map(|i| Blob::new(vec![i; 20])).collect()),
                ),
            ]),
        ),
        ("exactly 1 KB", padded(item(vec![("id", n("6"))]), 1024)),
        ("1 KB and a byte", padded(item(vec![("id", n("7"))]), 1025)),
        ("exactly 3 KB", padded(item(vec![("id", n("8"))]), 3072)),
        ("3 KB and a byte", padded(item(vec![("id", n("9"))]), 3073)),
    ];
    for (shape, it) in &shapes {
        let ours = write_capacity_units(item_size(it));
        let theirs = consumed(&aws.dynamodb, &table, it).await?;
        eprintln!(
            "{shape}: {} bytes, {ours} WCU computed, {theirs} WCU reported",
            item_size(it)
        );
        assert_eq!(ours as f64, theirs, "{shape} ({} bytes)", item_size(it));
    }

    // Three items of about 3 KB: 3 units each, 9 in all.
    let mut total = 0.0;
    for id in 10..13 {
        let it = item(vec![
            ("id", n(&id.to_string())),
            ("body", s(&"y".repeat(2900))),
        ]);
        assert_eq!(write_capacity_units(item_size(&it)), 3);
        total += consumed(&aws.dynamodb, &table, &it).await?;
    }
    assert_eq!(total, 9.0);
    Ok(())
}

#[tokio::test]
async fn where_dynalite_counts_differently_the_bounds_still_hold() -> Result<()> {
    let aws = TestEnv::from_env().aws().await;
    let table = create_table(&aws.dynamodb).await?;

    // Ten "-1.5": 2 bytes each by the documented rule, 4 by the service's
    // encoding (a byte to align the digit pairs, a byte for the sign).
    let mut numbers = item(vec![("id", n("1"))]);
    for i in 0..10 {
        numbers.insert(format!("n{i}"), n("-1.5"));
    }
    let numbers = padded(numbers, 1024);
    let documented = write_capacity_units(item_size(&numbers));
    let bound = write_capacity_units(item_size_upper_bound(&numbers));
    let reported = consumed(&aws.dynamodb, &table, &numbers).await?;
    eprintln!(
        "numbers: {} bytes documented, {} upper bound; {documented} WCU documented, {bound} upper bound, {reported} reported",
        item_size(&numbers),
        item_size_upper_bound(&numbers)
    );
    assert!(documented as f64 <= reported);
    assert!(bound as f64 >= reported);

    // 600 "é": 1,200 UTF-8 bytes, which DynamoDB documents as the size;
    // dynalite counts 600 UTF-16 code units. Counting UTF-8 can only
    // overestimate against dynalite, never under.
    let text = padded(item(vec![("id", n("2")), ("t", s(&"é".repeat(600)))]), 1300);
    let ours = write_capacity_units(item_size(&text));
    let reported = consumed(&aws.dynamodb, &table, &text).await?;
    eprintln!(
        "non-ASCII: {} UTF-8 bytes, {ours} WCU computed, {reported} reported",
        item_size(&text)
    );
    assert!(ours as f64 >= reported);
    Ok(())
}

#[tokio::test]
async fn the_400_kb_limit_is_where_item_size_puts_it() -> Result<()> {
    let aws = TestEnv::from_env().aws().await;
    let table = create_table(&aws.dynamodb).await?;
    let put = |it: Item| {
        aws.dynamodb
            .put_item()
            .table_name(&table)
            .set_item(Some(it))
            .send()
    };

    for (id, size) in [(1, MAX_ITEM_BYTES - 1), (2, MAX_ITEM_BYTES)] {
        put(padded(item(vec![("id", n(&id.to_string()))]), size))
            .await
            .with_context(|| format!("an item of {size} bytes was refused"))?;
    }
    let err = match put(padded(item(vec![("id", n("3"))]), MAX_ITEM_BYTES + 1)).await {
        Ok(_) => bail!("an item of {} bytes was accepted", MAX_ITEM_BYTES + 1),
        Err(e) => e,
    };
    let msg = backfill_aws::describe(&err);
    assert!(
        msg.contains("ValidationException") && msg.contains("size"),
        "{msg}"
    );

    // An item full of numbers whose upper bound is at the limit fits, which
    // the documented size alone could not promise.
    let mut numbers = item(vec![("id", n("4"))]);
    for i in 0..1000 {
        numbers.insert(format!("n{i:03}"), n("-1.5"));
    }
    let slack = item_size_upper_bound(&numbers) - item_size(&numbers);
    let numbers = padded(numbers, MAX_ITEM_BYTES - slack);
    assert_eq!(item_size_upper_bound(&numbers), MAX_ITEM_BYTES);
    put(numbers)
        .await
        .context("an item whose upper bound is at the limit was refused")?;
    Ok(())
}

struct Fixture {
    ddb: aws_sdk_dynamodb::Client,
    s3: aws_sdk_s3::Client,
    offloader: S3Offloader,
    table: String,
}

async fn fixture() -> Result<Fixture> {
    let env = TestEnv::from_env();
    let aws = env.aws().await;
    // moto serves S3 on the same port as SQS.
    let s3 = aws.s3.clone();
    // Bucket names allow neither underscores nor capitals.
    let bucket = unique("backfill-offload").replace('_', "-");
    let offloader = S3Offloader::new(s3.clone(), &bucket, "items/");
    offloader
        .ensure_bucket()
        .await
        .context("creating a bucket in the S3 emulator (run scripts/stack-up.sh)")?;
    // A second call finds the bucket there and is fine with it.
    offloader.ensure_bucket().await?;
    let table = create_table(&aws.dynamodb).await?;
    Ok(Fixture {
        ddb: aws.dynamodb,
        s3,
        offloader,
        table,
    })
}

fn large_item(id: &str) -> Item {
    let mut doc = String::with_capacity(600 * 1024);
    while doc.len() < 600 * 1024 {
        doc.push_str("line with \"quotes\", a backslash \\, é and 😀\n");
    }
    item(vec![
        ("id", n(id)),
        ("doc", s(&doc)),
        (
            "bin",
            AttributeValue::B(Blob::new(
                (0..=255u8).cycle().take(4096).collect::<Vec<u8>>(),
            )),
        ),
        ("price", n("-12.50")),
        ("flag", AttributeValue::Bool(true)),
        ("gone", AttributeValue::Null(true)),
        ("tags", AttributeValue::Ss(vec!["b".into(), "a".into()])),
        (
            "nested",
            AttributeValue::M(HashMap::from([(
                "list".to_string(),
                AttributeValue::L(vec![n("1"), s("two"), AttributeValue::M(HashMap::new())]),
            )])),
        ),
    ])
}

#[tokio::test]
async fn an_item_over_400_kb_goes_to_s3_and_comes_back_exactly() -> Result<()> {
    let f = fixture().await?;
    let original = large_item("42");
    let key = item(vec![("id", n("42"))]);
    assert!(item_size(&original) > MAX_ITEM_BYTES);

    // Why offloading exists: DynamoDB will not take the item itself.
    let refused = f
        .ddb
        .put_item()
        .table_name(&f.table)
        .set_item(Some(original.clone()))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "the emulator accepted a {} byte item",
        item_size(&original)
    );

    let pointer = f.offloader.offload(&f.table, &key, &original).await?;
    assert!(backfill_offload::is_pointer(&pointer));
    assert_eq!(pointer.get("id"), Some(&n("42")));
    assert_eq!(pointer.len(), 2);
    assert!(
        item_size(&pointer) < 1024,
        "pointer is {} bytes",
        item_size(&pointer)
    );
    let Some(AttributeValue::M(loc)) = pointer.get(POINTER_ATTRIBUTE) else {
        bail!("no {POINTER_ATTRIBUTE} map in {pointer:?}");
    };
    let object_key = f.offloader.object_key(&f.table, &key)?;
    assert!(object_key.starts_with(&format!("items/{}/", f.table)));
    assert!(object_key.ends_with(".json"));
    assert_eq!(loc.get("bucket"), Some(&s(f.offloader.bucket())));
    assert_eq!(loc.get("key"), Some(&s(&object_key)));
    let json = canonical_json(&original).map_err(anyhow::Error::msg)?;
    assert_eq!(loc.get("size"), Some(&n(&json.len().to_string())));

    // The object is the item as DynamoDB JSON, byte for byte.
    let body =
        f.s3.get_object()
            .bucket(f.offloader.bucket())
            .key(&object_key)
            .send()
            .await?
            .body
            .collect()
            .await?
            .into_bytes();
    assert_eq!(body.as_ref(), json.as_bytes());

    // The pointer goes where the item would have, and resolves from there.
    f.ddb
        .put_item()
        .table_name(&f.table)
        .set_item(Some(pointer.clone()))
        .send()
        .await?;
    let read = f
        .ddb
        .get_item()
        .table_name(&f.table)
        .set_key(Some(key.clone()))
        .consistent_read(true)
        .send()
        .await?
        .item
        .context("the pointer item is not in the table")?;
    assert_eq!(read, pointer);
    let fetched = f.offloader.fetch(&read).await?;
    assert_eq!(fetched, original);

    // Offloading the same item again writes the same object and pointer.
    let again = f.offloader.offload(&f.table, &key, &original).await?;
    assert_eq!(again, pointer);
    assert_eq!(f.offloader.fetch(&again).await?, original);
    Ok(())
}

#[tokio::test]
async fn a_changed_object_or_a_wrong_key_is_refused() -> Result<()> {
    let f = fixture().await?;
    let original = large_item("7");
    let key = item(vec![("id", n("7"))]);
    let pointer = f.offloader.offload(&f.table, &key, &original).await?;

    // An object that is not what the pointer describes (overwritten by a
    // later copy whose pointer write has not landed, or tampered with).
    let object_key = f.offloader.object_key(&f.table, &key)?;
    f.s3.put_object()
        .bucket(f.offloader.bucket())
        .key(&object_key)
        .body(aws_sdk_s3::primitives::ByteStream::from_static(
            br#"{"id":{"N":"7"}}"#,
        ))
        .send()
        .await?;
    match f.offloader.fetch(&pointer).await {
        Err(e @ OffloadError::Corrupt { .. }) => {
            assert!(!e.is_retryable());
            let msg = e.to_string();
            assert!(
                msg.contains(&f.table) && msg.contains(r#"{"id":{"N":"7"}}"#),
                "{msg}"
            );
        }
        other => bail!("expected a corrupt-object error, got {other:?}"),
    }

    // A key that is not the item's own.
    let wrong = item(vec![("id", n("8"))]);
    match f.offloader.offload(&f.table, &wrong, &original).await {
        Err(e @ OffloadError::Invalid { .. }) => assert!(!e.is_retryable()),
        other => bail!("expected an invalid-key error, got {other:?}"),
    }

    // A pointer to an object that is not there.
    let mut missing = pointer.clone();
    if let Some(AttributeValue::M(loc)) = missing.get_mut(POINTER_ATTRIBUTE) {
        loc.insert("key".into(), s("items/nowhere/none.json"));
    }
    match f.offloader.fetch(&missing).await {
        Err(e @ OffloadError::Storage { .. }) => assert!(!e.is_retryable(), "{e}"),
        other => bail!("expected a storage error, got {other:?}"),
    }
    Ok(())
}
