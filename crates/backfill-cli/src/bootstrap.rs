//! `bootstrap`: the queues and the control table of a local or demo stack
//! (with `--fresh`, emptied first).

use std::process::ExitCode;

use anyhow::{Context, Result};
use backfill_aws::AwsClients;
use backfill_config::BackfillConfig;
use backfill_item::ItemMapper;
use backfill_source::TableRef;

use crate::{connect_source, offloader, sink};

pub(crate) async fn bootstrap(cfg: &BackfillConfig, fresh: bool) -> Result<ExitCode> {
    use aws_sdk_dynamodb::types::ScalarAttributeType as T;
    let aws = AwsClients::from_config(&cfg.aws).await;
    let sink = sink(cfg, &aws);
    if fresh {
        for t in &cfg.tables {
            if sink.delete_table(&t.target).await? {
                println!("deleted target table {}", t.target);
            }
        }
    }
    let name = backfill_queue::queue_name_from_url(&cfg.queue.url);
    let dlq_name = backfill_queue::queue_name_from_url(&cfg.queue.dlq_url);
    let (url, dlq_url) = backfill_queue::create_queues(
        &aws.sqs,
        name,
        dlq_name,
        cfg.queue.max_receive_count,
        cfg.queue.visibility_timeout_secs,
    )
    .await?;
    println!(
        "queue {url} (redrive to {dlq_url} after {} receives)",
        cfg.queue.max_receive_count
    );
    if url != cfg.queue.url || dlq_url != cfg.queue.dlq_url {
        anyhow::bail!(
            "the queues were created at {url} and {dlq_url}, not at queue.url and queue.dlq_url of the config"
        );
    }
    if fresh {
        for u in [&url, &dlq_url] {
            backfill_aws::retry(backfill_aws::RetryPolicy::CALL, || {
                aws.sqs.purge_queue().queue_url(u).send()
            })
            .await
            .with_context(|| format!("purging {u}"))?;
        }
        println!("purged both queues");
    }
    sink.ensure_table(&cfg.control.table, ("pk", T::S), Some(("sk", T::S)))
        .await?;
    println!("control table {}", cfg.control.table);
    if let Some(o) = offloader(cfg, &aws) {
        o.ensure_bucket().await?;
        println!("offload bucket {}", o.bucket());
    }
    if cfg.archive.is_some() {
        let store = crate::archive::store(cfg, &aws)?;
        store.ensure_bucket().await?;
        println!("archive bucket {}", store.bucket());
    }
    let source = connect_source(cfg).await?;
    for t in &cfg.tables {
        let schema = source.describe(&TableRef::parse(&t.source)).await?;
        let mapper = ItemMapper::new(t, &schema)?;
        let pk = mapper.partition_key();
        let sk = mapper.sort_key();
        sink.ensure_table(
            &t.target,
            (&pk.attribute, pk.attribute_type.clone()),
            sk.map(|k| (k.attribute.as_str(), k.attribute_type.clone())),
        )
        .await?;
        println!("target table {} for {}", t.target, t.source);
    }
    Ok(ExitCode::SUCCESS)
}
