//! The Secrets Manager resolver against moto (`AWS_ENDPOINT_URL`); skipped loudly without it.

use super::*;
use std::collections::HashMap;
use std::time::Duration;

async fn client(test: &str) -> Option<aws_sdk_secretsmanager::Client> {
    crate::aws::emulator_endpoint("AWS_ENDPOINT_URL", test)?;
    Some(aws_sdk_secretsmanager::Client::new(&crate::aws::sdk_config().await))
}

#[tokio::test]
async fn resolves_plain_and_json_secrets_with_a_ttl_cache() {
    let Some(client) = client("secrets::resolves_plain_and_json_secrets_with_a_ttl_cache").await else { return };
    let tag = format!("{:08x}", fastrand::u32(..));
    let plain = client
        .create_secret()
        .name(format!("plain-{tag}"))
        .secret_string("mem-key-1")
        .send()
        .await
        .expect("create plain secret")
        .arn
        .expect("arn");
    let bundle_name = format!("bundle-{tag}");
    client
        .create_secret()
        .name(&bundle_name)
        .secret_string(r#"{"LIGHTRAG_API_KEY": "lr-key", "CONNECTOR_API_KEY": "api-key"}"#)
        .send()
        .await
        .expect("create JSON secret");
    let vars = HashMap::from([
        ("MEMORY_API_KEY_SECRET_ARN".to_owned(), plain.clone()),
        ("BUNDLE_SECRET_ARN".to_owned(), bundle_name.clone()),
        ("MEMORY_API_KEY".to_owned(), "plain-env-value-loses".to_owned()),
        ("OTHER".to_owned(), "kept".to_owned()),
    ]);

    let cached = SecretsManagerResolver::new(client.clone(), Duration::from_secs(3600));
    let env = cached.resolve(vars.clone()).await.expect("resolve");
    assert_eq!(
        env.get("MEMORY_API_KEY").map(String::as_str),
        Some("mem-key-1"),
        "the secret wins over the plain variable"
    );
    assert_eq!(env.get("LIGHTRAG_API_KEY").map(String::as_str), Some("lr-key"));
    assert_eq!(env.get("CONNECTOR_API_KEY").map(String::as_str), Some("api-key"));
    assert_eq!(env.get("OTHER").map(String::as_str), Some("kept"));

    // Rotate: the cached resolver keeps the old value for its TTL; a resolver
    // with a zero TTL fetches again.
    client.put_secret_value().secret_id(&plain).secret_string("mem-key-2").send().await.expect("rotate");
    let env = cached.resolve(vars.clone()).await.expect("resolve again");
    assert_eq!(
        env.get("MEMORY_API_KEY").map(String::as_str),
        Some("mem-key-1"),
        "served from the cache within the TTL"
    );
    assert!(cached.is_fresh());
    let uncached = SecretsManagerResolver::new(client.clone(), Duration::ZERO);
    let env = uncached.resolve(vars.clone()).await.expect("resolve uncached");
    assert_eq!(env.get("MEMORY_API_KEY").map(String::as_str), Some("mem-key-2"));
    assert!(!uncached.is_fresh(), "a zero TTL is never fresh");

    // A missing secret: the error names variable and secret, never a value.
    let missing = HashMap::from([("MEMORY_API_KEY_SECRET_ARN".to_owned(), format!("missing-{tag}"))]);
    let error = uncached.resolve(missing).await.expect_err("missing secret").to_string();
    assert!(error.contains(&format!("missing-{tag}")) && error.contains("${MEMORY_API_KEY}"), "{error}");
    assert!(!error.contains("mem-key"), "{error}");
}
