//! A request that is accepted and never answered (a hung load balancer, a
//! half-dead connection) ends in a retryable timeout after
//! `aws.attempt_timeout_secs` per attempt, instead of holding its job until
//! the process is stopped.

use std::time::{Duration, Instant};

use aws_smithy_runtime_api::client::result::SdkError;
use backfill_aws::{is_retryable, AwsClients, StaticCredentials};
use backfill_config::AwsConfig;

#[tokio::test]
async fn an_unanswered_request_times_out_and_may_be_retried() {
    // An endpoint that accepts every connection and never writes a byte.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let cfg = AwsConfig {
        region: "us-east-1".into(),
        endpoint_url: Some(format!("http://{addr}")),
        dynamodb_endpoint_url: None,
        sqs_endpoint_url: None,
        s3_endpoint_url: None,
        attempt_timeout_secs: 1,
    };
    let aws = AwsClients::with_static_credentials(
        &cfg,
        StaticCredentials {
            access_key_id: "test".into(),
            secret_access_key: "test".into(),
        },
    )
    .await;
    let started = Instant::now();
    // Without the attempt timeout this call waits forever: the outer bound
    // is only there to fail the test instead of hanging it.
    let result = tokio::time::timeout(Duration::from_secs(60), aws.dynamodb.list_tables().send())
        .await
        .expect("the call ended by itself instead of hanging");
    let err = result.expect_err("nothing was answered");
    assert!(matches!(err, SdkError::TimeoutError(_)), "{err:?}");
    assert!(is_retryable(&err));
    // The SDK's three attempts of one second each, with backoff between.
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(took < Duration::from_secs(30), "{took:?}");

    // SQS (the queue client) is bounded the same way.
    let result = tokio::time::timeout(Duration::from_secs(60), aws.sqs.list_queues().send())
        .await
        .expect("the call ended by itself instead of hanging");
    let err = result.expect_err("nothing was answered");
    assert!(matches!(err, SdkError::TimeoutError(_)), "{err:?}");
}
